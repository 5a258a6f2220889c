"""The first-party proxy: vendor scripts and hit endpoints served from the site's origin,
streaming, with the same hygiene as events.

``router`` matches a request to a rules route and runs the consent gate; ``target`` builds
the upstream URL (only the route's host, ever); ``headers`` cleans headers both ways;
``forward`` streams a request and its answer; ``scripts`` answers ``cache:`` routes from
memory (``cache``); ``rewrite`` reads, cleans and encodes again the hits of ``vendor:``
routes, with one module per vendor format in ``vendors`` and the route's pipeline applied by
``hygiene``; ``state`` is what the proxy keeps while it runs.
"""
