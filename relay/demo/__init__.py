"""``relay demo``: a shop page, its backend, stand-in vendors and the relay on one port.

``app.create_demo_app`` builds the ASGI app, ``app.serve`` runs it (``relay demo``). See the
README's "Demo" section for the tour.
"""
