// The setup progress page: asks /readyz on this address every few seconds and marks the
// steps. The setup page's server answers first ({"setup": …}); once the box is set up it
// stops, and perch itself answers on the same address with its readiness.
'use strict';
(function () {
  var steps = document.getElementById('steps');
  if (!steps) return;
  function mark(id, state, text) {
    var li = document.getElementById(id);
    li.className = state;
    li.querySelector('.state').textContent = text;
  }
  function reason(text) {
    document.getElementById('reason').textContent = text || '';
  }
  function later(ms) {
    setTimeout(poll, ms);
  }
  function relays(list) {
    if (!list || list.length === 0) {
      mark('step-relay', 'done', 'No relays in the settings: nothing to announce to.');
      return true;
    }
    var healthy = list.filter(function (r) { return r.health === 'healthy'; });
    if (healthy.length > 0) {
      mark('step-relay', 'done', healthy[0].relay + ' has your repository.');
      return true;
    }
    var asked = list.filter(function (r) { return r.crawlResult === 'ok'; });
    if (asked.length > 0) {
      mark('step-relay', 'done', 'Asked ' + asked[0].relay + ' to crawl this box; your posts reach the network from now on.');
      return true;
    }
    var r = list[0];
    mark('step-relay', 'working', r.relay + ': ' + (r.error || r.crawlResult || 'asking it to crawl this box…'));
    return false;
  }
  function poll() {
    fetch('/readyz', { cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(show, function () {
        // Nobody answered: the setup page has stopped and perch is starting.
        mark('step-account', 'done', 'Created.');
        mark('step-start', 'working', 'Starting…');
        later(2000);
      });
  }
  function show(j) {
    if (j.setup === 'waiting' || j.setup === 'applying') {
      mark('step-account', 'working', 'Creating your account, its keys and its DID…');
      return later(2000);
    }
    if (j.setup === 'failed') {
      mark('step-account', 'failed', 'Setup stopped.');
      reason(j.reason);
      document.getElementById('again').hidden = false;
      return;
    }
    if (j.setup === 'applied') {
      mark('step-account', 'done', 'Created.');
      mark('step-start', 'working', 'Starting…');
      return later(2000);
    }
    // perch itself.
    mark('step-account', 'done', j.did ? 'Created: ' + j.did : 'Created.');
    mark('step-start', 'done', 'Running.');
    if (!j.tls) {
      mark('step-cert', 'done', 'HTTPS is off in the settings.');
    } else if (j.tls.serving) {
      mark('step-cert', 'done', 'Serving a certificate' +
        (j.tls.certificateDaysLeft != null ? ' (' + j.tls.certificateDaysLeft + ' days left).' : '.'));
    } else {
      mark('step-cert', 'working', (j.tls.status || 'Asking Let\u2019s Encrypt…') +
        (j.tls.lastError ? ' Last error: ' + j.tls.lastError : ''));
    }
    if (!j.ready) {
      reason(j.reason);
      return later(3000);
    }
    reason('');
    if (relays(j.relays)) {
      document.getElementById('live').hidden = false;
      return later(30000);
    }
    later(3000);
  }
  poll();
})();
