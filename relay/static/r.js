/* Relay's browser snippet, served as GET {prefix}/r.js (README: "Install the snippet").

   No cookie is set here and no storage is used: identity is the relay's HttpOnly cookie.

   relay/snippet.py minifies this file when it is served: it drops comments and whitespace
   and shortens the names declared with `let`, `catch` and arrow-function parameters. It is
   a tokenizer, not a parser, so keep to what it handles: one name per `let`, no `var` or
   `function`, no template literals, no shorthand properties ({a} is written {a: a}), and a
   semicolon after every statement. */
((win, doc, nav) => {
  if (win.relay && win.relay.loaded) return; /* loaded twice */
  let script = doc.currentScript; /* set while a classic script runs, async ones too */
  let endpoint = new URL("e", script.src).href; /* .../t/r.js -> .../t/e: any prefix works */
  let auto = script.dataset.auto != "off";
  /* relay purpose <- the IAB TCF v2 purposes that must all have consent: 1 store or access
     information on a device, 3 and 4 personalised advertising, 7 measure advertising
     performance, 8 measure content performance. */
  let tcfPurposes = {analytics: [1, 8], ads: [1, 3, 4, 7]};
  let queue = []; /* events waiting for the next flush */
  let consent; /* the latest explicit decision, merged; undefined until there is one */
  let url = location.href;
  let referrer = doc.referrer;
  let tries = 20; /* a late __tcfapi is looked for every 250 ms, for 5 seconds */
  let internal = /^gtm\.|^event(Callback|Timeout)$/; /* GTM's own events and keys */

  /* Local names are reused on purpose (x: the argument, k: a key, r: a result): the
     minifier maps each name to one letter, and repeated letters gzip better. */

  /* What the event says wins over these defaults. */
  let send = (x) => queue.push({
    event_id: crypto.getRandomValues(new Uint32Array(4)).join("-"),
    context: {page: {url: location.href, referrer: referrer, title: doc.title},
      gpc: nav.globalPrivacyControl}, /* an opt-out can only narrow what is sent */
    consent: consent,
    ...x
  }) > 1 || setTimeout(flush); /* the events of one tick go in one request */

  let flush = () => {
    while (queue.length) {
      let r = JSON.stringify({batch: queue.splice(0, 20)});
      /* A string body is sent as text/plain: no CORS preflight, and a beacon outlives the
         page. fetch sends the cookie by default: the endpoint is on the page's origin. */
      nav.sendBeacon && nav.sendBeacon(endpoint, r) ||
        fetch(endpoint, {method: "POST", body: r, keepalive: true}).catch(() => 0);
    }
  };

  /* An explicit decision: merged into the last one, announced when the result changes. */
  let decide = (x) => {
    let r = {...consent};
    for (let k in x) [true, false, "granted", "denied"].includes(x[k]) && (r[k] = x[k]);
    JSON.stringify(r) == JSON.stringify(consent || {}) ||
      send({event: "consent_update", consent: consent = r});
  };

  /* TCF: act on tcloaded and useractioncomplete (not cmpuishown), where GDPR applies. */
  let onTcf = (x, ok) => {
    let r = {};
    if (ok && x.gdprApplies && x.eventStatus != "cmpuishown") {
      for (let k in tcfPurposes) r[k] = tcfPurposes[k].every((p) => x.purpose.consents[p]) ?
        "granted" : "denied";
      decide(r);
    }
  };

  let watchTcf = () => win.__tcfapi ? win.__tcfapi("addEventListener", 2, onTcf) :
    tries-- && setTimeout(watchTcf, 250);

  /* gtag() pushes Arguments objects (read for Consent Mode updates); GTM events are plain
     objects, sent in their flat form (the relay makes the other keys properties). */
  let fromDataLayer = (x) => {
    let r = {};
    x = Object(x); /* null and other odd entries read as an empty object */
    if (x[0] == "consent") x[1] == "update" && decide(x[2]);
    else if (x.event && !internal.test(x.event)) {
      for (let k in x) internal.test(k) || (r[k] = x[k]);
      send(r);
    }
  };

  let page = (x) => send({event: "page_view", properties: x});

  let navigated = () => {
    if (location.href != url) {
      referrer = url;
      url = location.href;
      auto && page();
    }
  };

  /* obj[method] calls the original, then after(its arguments). */
  let wrap = (obj, method, after) => {
    let original = obj[method];
    obj[method] = (...x) => {
      let r = original.apply(obj, x);
      after(x);
      return r;
    };
  };

  let relay = (command, x, props, options) =>
    command == "track" ? send({event: x, properties: props, ...options}) :
    command == "page" ? page(x) :
    command == "consent" ? decide(x) :
    command == "config" && (tcfPurposes = x.tcf || tcfPurposes);

  let waiting = win.relay && win.relay.q || [];
  let dataLayer = win.dataLayer = win.dataLayer || [];
  relay.loaded = true;
  win.relay = relay;
  waiting.forEach((x) => relay(...x));
  dataLayer.forEach(fromDataLayer);
  wrap(dataLayer, "push", (x) => x.forEach(fromDataLayer));
  watchTcf();
  auto && page(); /* after the decisions already made, so it carries them */
  wrap(history, "pushState", navigated);
  wrap(history, "replaceState", navigated);
  addEventListener("popstate", navigated);
  addEventListener("pagehide", flush);
  doc.addEventListener("visibilitychange", () => doc.hidden && flush());
})(window, document, navigator);
