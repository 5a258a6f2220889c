/* Relay's browser snippet, served as GET {prefix}/r.js (README: "Install the snippet").

   relay/snippet.py strips the comments and whitespace when it serves this file. Its minifier
   is deliberately small: keep to what it handles (no regex or template literals, and a
   semicolon after every statement).

   No cookie is set here and no storage is used: identity is the relay's HttpOnly cookie. */
(function (win, doc, nav) {
  "use strict";
  if (win.relay && win.relay.loaded) return; /* loaded twice */
  var script = doc.currentScript || doc.querySelector('script[src*="r.js"]');
  var endpoint = new URL("e", script.src).href; /* .../t/r.js -> .../t/e: any prefix works */
  var auto = script.getAttribute("data-auto") != "off";
  /* relay purpose <- the TCF purposes that must all have consent (IAB TCF v2 purpose ids):
     1 store/access information on a device, 3 and 4 personalised-advertising profiles,
     7 measure advertising performance, 8 measure content performance. */
  var tcfPurposes = {analytics: [1, 8], ads: [1, 3, 4, 7]};
  var queue = []; /* events waiting for the next flush */
  var consent; /* the latest explicit decision (merged); undefined until there is one */
  var url = location.href;
  var referrer = doc.referrer;

  function newId() {
    var id = "";
    crypto.getRandomValues(new Uint8Array(16)).forEach(function (b) {
      id += (b + 256).toString(16).slice(1);
    });
    return id;
  }

  function send(ev) {
    ev.event_id = ev.event_id || newId();
    ev.context = ev.context || {page: {url: location.href, referrer: referrer, title: doc.title}};
    if (queue.push(ev) == 1) setTimeout(flush, 0); /* one request per tick */
  }

  function flush() {
    while (queue.length) {
      var events = queue.splice(0, 20);
      events.forEach(function (ev) {
        ev.consent = ev.consent || consent;
      });
      var body = JSON.stringify({batch: events});
      /* A string beacon is text/plain: no CORS preflight, and it survives the page's end. */
      if (!(nav.sendBeacon && nav.sendBeacon(endpoint, body))) {
        fetch(endpoint, {
          method: "POST", body: body, keepalive: true, credentials: "include",
          headers: {"Content-Type": "text/plain"}
        }).catch(function () {});
      }
    }
  }

  /* An explicit consent decision: merged into the current one; announced when it changes. */
  function decide(values) {
    var next = Object.assign({}, consent);
    for (var key in values) {
      var v = values[key];
      if (v === true || v === false || v == "granted" || v == "denied") next[key] = v;
    }
    if (JSON.stringify(next) != JSON.stringify(consent || {})) {
      consent = next;
      send({event: "consent_update", consent: next});
    }
  }

  function onTcf(tc, ok) {
    var status = tc && tc.eventStatus;
    if (!ok || !tc.gdprApplies || (status != "tcloaded" && status != "useractioncomplete")) return;
    var given = tc.purpose && tc.purpose.consents || {}, out = {};
    for (var name in tcfPurposes) {
      out[name] = tcfPurposes[name].every(function (id) {
        return given[id] === true;
      }) ? "granted" : "denied";
    }
    decide(out);
  }

  function watchTcf(tries) { /* CMPs define __tcfapi early; give a late one 5 seconds */
    if (win.__tcfapi) win.__tcfapi("addEventListener", 2, onTcf);
    else if (tries) setTimeout(watchTcf, 250, tries - 1);
  }

  /* A dataLayer entry: gtag() pushes Arguments objects, GTM events are plain objects. */
  function fromDataLayer(item) {
    var type = Object.prototype.toString.call(item);
    if (type == "[object Arguments]") {
      if (item[0] == "consent" && item[1] == "update") decide(item[2]);
    } else if (type == "[object Object]" && typeof item.event == "string" && item.event &&
               item.event.indexOf("gtm.")) {
      var ev = Object.assign({}, item);
      delete ev.eventCallback;
      delete ev.eventTimeout;
      send(ev); /* the flat form: the relay turns the other keys into properties */
    }
  }

  function page(props) {
    send({event: "page_view", properties: props});
  }

  function navigated() {
    if (location.href != url) {
      referrer = url;
      url = location.href;
      if (auto) page();
    }
  }

  function relay(command, a, b, c) {
    if (command == "track") send(Object.assign({event: a, properties: b}, c));
    else if (command == "page") page(a);
    else if (command == "consent") decide(a);
    else if (command == "config" && a.tcf) tcfPurposes = a.tcf;
  }

  try {
    tcfPurposes = JSON.parse(script.getAttribute("data-tcf")) || tcfPurposes;
  } catch (e) {}
  var waiting = win.relay && win.relay.q || [];
  relay.loaded = true;
  relay.gpc = nav.globalPrivacyControl === true; /* for the page; the relay reads Sec-GPC */
  win.relay = relay;
  waiting.forEach(function (args) {
    relay.apply(null, args);
  });
  if (auto) page();

  var dataLayer = win.dataLayer = win.dataLayer || [];
  var push = dataLayer.push;
  dataLayer.forEach(fromDataLayer);
  dataLayer.push = function () {
    var result = push.apply(dataLayer, arguments);
    [].forEach.call(arguments, fromDataLayer);
    return result;
  };
  watchTcf(20);

  ["pushState", "replaceState"].forEach(function (name) {
    var original = history[name];
    history[name] = function () {
      var result = original.apply(this, arguments);
      navigated();
      return result;
    };
  });
  win.addEventListener("popstate", navigated);
  win.addEventListener("pagehide", flush);
  doc.addEventListener("visibilitychange", function () {
    if (doc.visibilityState == "hidden") flush();
  });
})(window, document, navigator);
