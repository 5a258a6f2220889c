# Fastly (VCL service) in front of the relay: add to the service's custom VCL, keeping the
# #FASTLY macros. The relay's rules must say:
#   relay:
#     client_ip: {header: Fastly-Client-IP}
#     country_header: Fastly-Geo-Country
# Fastly-Client-IP is set here from client.ip on the edge node (not on a shield, which would
# see the edge's address); a client's own value is overwritten. Only Fastly may reach the
# origin (its public IP list at the firewall).

sub vcl_recv {
#FASTLY recv
  if (req.url.path ~ "^/t/") {
    if (!req.http.Fastly-FF) {
      set req.http.Fastly-Client-IP = client.ip;
      set req.http.Fastly-Geo-Country = client.geo.country_code;
    }
    # Events (/t/e, /t/hook/..., /t/v1/...): never cached, never looked up.
    if (req.url.path == "/t/e" || req.url.path ~ "^/t/(hook|v1)/") {
      return(pass);
    }
  }
  # Fastly's boilerplate: only GET and HEAD are looked up in the cache.
  if (req.method != "HEAD" && req.method != "GET" && req.method != "FASTLYPURGE") {
    return(pass);
  }
  return(lookup);
}

sub vcl_fetch {
#FASTLY fetch
  if (req.url.path ~ "^/t/") {
    # Stream answers to the browser as the relay sends them (proxy routes stream vendors).
    set beresp.do_stream = true;
    # /t/r.js: cached for the relay's Cache-Control max-age (300 s), revalidated with its ETag.
    # A response that sets a cookie is never cached (Fastly's default VCL passes it); the
    # Set-Cookie itself goes back to the browser unchanged, and Cookie goes up unchanged.
    if (beresp.http.Set-Cookie) {
      return(pass);
    }
  }
  return(deliver);
}
