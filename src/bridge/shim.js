// glassdrill's WebAuthn bridge, installed in every document before page
// scripts (Page.addScriptToEvaluateOnNewDocument). It replaces
// navigator.credentials.get: a request is queued in the top document,
// where glassdrill takes it over WebDriver (execute-script polls; never a
// fetch to loopback, which Local Network Access would block on a public
// page), checks it, asks the security key, and settles the promise through
// `settle`. `create` fails as a browser with no usable authenticator would.
// Everything the shim relies on is captured here, before any page script
// runs. The hook object is non-enumerable and frozen; its name is per run
// but not secret (a page can list window's properties): nothing a page can
// do through it makes glassdrill sign for another RP id or origin.
(() => {
  'use strict';
  const KEY = '__GLASSDRILL_BRIDGE__';
  const w = window;
  if (typeof navigator === 'undefined' || !navigator.credentials) return;
  if (typeof w.PublicKeyCredential !== 'function') return;
  if (Object.prototype.hasOwnProperty.call(w, KEY)) return;

  const Pkc = w.PublicKeyCredential;
  const Aar = w.AuthenticatorAssertionResponse;
  const DOMEx = w.DOMException;
  const nativeGet = w.CredentialsContainer.prototype.get;
  const create = Object.create;
  const define = Object.defineProperty;
  const freeze = Object.freeze;
  const U8 = Uint8Array;
  const AB = ArrayBuffer;
  const isView = ArrayBuffer.isView;
  const isArray = Array.isArray;
  const fromCharCode = String.fromCharCode;
  const btoa_ = w.btoa.bind(w);
  const atob_ = w.atob.bind(w);
  const setTimeout_ = w.setTimeout.bind(w);
  const clearTimeout_ = w.clearTimeout.bind(w);
  const now = Date.now;
  const call = Function.prototype.call.bind(Function.prototype.call);
  const P = Promise;
  const myOrigin = w.location.origin;
  const isTop = w === w.top;
  const notAllowed = () =>
    new DOMEx('The operation either timed out or was not allowed.', 'NotAllowedError');
  const b64 = (u8) => {
    let s = '';
    for (let i = 0; i < u8.length; i++) s += fromCharCode(u8[i]);
    let out = '';
    const t = btoa_(s);
    for (let i = 0; i < t.length; i++) {
      const c = t[i];
      if (c === '+') out += '-';
      else if (c === '/') out += '_';
      else if (c !== '=') out += c;
    }
    return out;
  };
  const unb64 = (s) => {
    let t = '';
    for (let i = 0; i < s.length; i++) {
      const c = s[i];
      t += c === '-' ? '+' : c === '_' ? '/' : c;
    }
    while (t.length % 4) t += '=';
    const bin = atob_(t);
    const u = new U8(bin.length);
    for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
    return u.buffer;
  };
  const bytes = (src, what) => {
    if (src instanceof AB) return new U8(src.slice(0));
    if (isView(src)) return new U8(src.buffer.slice(src.byteOffset, src.byteOffset + src.byteLength));
    throw new TypeError("Failed to execute 'get' on 'CredentialsContainer': " + what + ' is not a BufferSource.');
  };

  // The request as glassdrill reads it (pure data, base64url bytes).
  const describe = (pk) => {
    if (!pk || typeof pk !== 'object') throw new TypeError("Failed to execute 'get' on 'CredentialsContainer': publicKey is required.");
    const allow = [];
    if (pk.allowCredentials !== undefined) {
      if (!isArray(pk.allowCredentials)) throw new TypeError('allowCredentials is not a sequence.');
      for (let i = 0; i < pk.allowCredentials.length; i++) {
        allow[allow.length] = b64(bytes(pk.allowCredentials[i].id, 'allowCredentials[' + i + '].id'));
      }
    }
    return {
      challenge: b64(bytes(pk.challenge, 'challenge')),
      rpId: pk.rpId === undefined ? null : String(pk.rpId),
      allowCredentials: allow,
      userVerification: pk.userVerification === undefined ? 'preferred' : String(pk.userVerification),
      timeout: typeof pk.timeout === 'number' ? pk.timeout : null,
    };
  };

  // The credential object the page gets: built on the real prototypes, so
  // `instanceof PublicKeyCredential` / `AuthenticatorAssertionResponse` hold.
  const credential = (r) => {
    const resp = create(Aar.prototype);
    define(resp, 'clientDataJSON', { value: unb64(r.clientDataJSON), enumerable: true });
    define(resp, 'authenticatorData', { value: unb64(r.authenticatorData), enumerable: true });
    define(resp, 'signature', { value: unb64(r.signature), enumerable: true });
    define(resp, 'userHandle', { value: r.userHandle ? unb64(r.userHandle) : null, enumerable: true });
    define(resp, 'attestationObject', { value: undefined });
    const json = () => {
      const out = {
        id: r.id,
        rawId: r.id,
        type: 'public-key',
        authenticatorAttachment: 'cross-platform',
        clientExtensionResults: {},
        response: {
          clientDataJSON: r.clientDataJSON,
          authenticatorData: r.authenticatorData,
          signature: r.signature,
        },
      };
      if (r.userHandle) out.response.userHandle = r.userHandle;
      return out;
    };
    const cred = create(Pkc.prototype);
    define(cred, 'id', { value: r.id, enumerable: true });
    define(cred, 'rawId', { value: unb64(r.id), enumerable: true });
    define(cred, 'type', { value: 'public-key', enumerable: true });
    define(cred, 'response', { value: freeze(resp), enumerable: true });
    define(cred, 'authenticatorAttachment', { value: 'cross-platform', enumerable: true });
    define(cred, 'getClientExtensionResults', { value: () => ({}) });
    define(cred, 'toJSON', { value: json });
    return freeze(cred);
  };
  const failure = (e) => {
    const name = e && typeof e.name === 'string' ? e.name : 'NotAllowedError';
    const msg = e && typeof e.message === 'string' ? e.message : '';
    return new DOMEx(msg || 'The operation either timed out or was not allowed.', name);
  };

  // ---- the top document: the one request glassdrill polls ---------------
  // One slot, not a queue: a document has one ceremony at a time (`busy`).
  // The request goes to glassdrill as a string made here, with the origin
  // this document had when the shim was installed; glassdrill still
  // compares it with the origin WebDriver reports.
  const stringify = JSON.stringify;
  let slot = null;
  let settleSlot = null;
  let seq = 0;
  const hook = freeze({
    // The request waiting to be taken (a JSON string), or null.
    take() {
      if (slot === null) return null;
      const r = slot;
      slot = null;
      return r;
    },
    // Settles request `id`: {ok: {...}} or {err: {name, message}}.
    settle(id, outcome) {
      if (settleSlot === null || settleSlot.id !== id) return false;
      const s = settleSlot.finish;
      settleSlot = null;
      s(outcome);
      return true;
    },
  });
  if (isTop) {
    define(w, KEY, { value: hook, enumerable: false, configurable: false, writable: false });
  }

  // ---- every document: the replaced API ----------------------------------
  let busy = false;
  const clampTimeout = (t) => (t === null ? 300000 : t < 10000 ? 10000 : t > 600000 ? 600000 : t);
  const get = function get(options) {
    if (!options || !options.publicKey) return call(nativeGet, navigator.credentials, options);
    let req;
    try {
      req = describe(options.publicKey);
    } catch (e) {
      return P.reject(e);
    }
    const signal = options.signal;
    if (signal && signal.aborted) return P.reject(signal.reason || new DOMEx('signal is aborted without reason', 'AbortError'));
    if (options.mediation === 'conditional') {
      // Autofill UI: glassdrill never picks a passkey from autofill; the
      // request waits, as for a person who never opens the list.
      return new P((resolve, reject) => {
        if (signal) signal.addEventListener('abort', () => reject(signal.reason || new DOMEx('', 'AbortError')));
      });
    }
    if (!isTop) {
      // A frame's origin is only what the page says it is: glassdrill signs
      // for the top document, whose origin WebDriver confirms, and nothing else.
      return P.reject(new DOMEx("The 'publickey-credentials-get' feature is not enabled in this document (glassdrill's bridge serves the top document only).", 'NotAllowedError'));
    }
    if (busy) return P.reject(new DOMEx('A request is already pending.', 'NotAllowedError'));
    req.timeout = clampTimeout(req.timeout);
    busy = true;
    return new P((resolve, reject) => {
      let done = false;
      let timer = null;
      seq += 1;
      const id = String(seq) + '.' + String(now());
      const finish = (outcome) => {
        if (done) return;
        done = true;
        busy = false;
        if (timer !== null) clearTimeout_(timer);
        if (slot !== null) slot = null;
        if (settleSlot !== null && settleSlot.id === id) settleSlot = null;
        if (outcome && outcome.ok) {
          try {
            resolve(credential(outcome.ok));
          } catch (e) {
            reject(notAllowed());
          }
        } else {
          reject(failure(outcome && outcome.err));
        }
      };
      slot = stringify({
        id: id,
        challenge: req.challenge,
        rpId: req.rpId,
        allowCredentials: req.allowCredentials,
        userVerification: req.userVerification,
        timeout: req.timeout,
        origin: myOrigin,
      });
      settleSlot = { id: id, finish: finish };
      timer = setTimeout_(() => finish({ err: { name: 'NotAllowedError', message: '' } }), req.timeout);
      if (signal) {
        signal.addEventListener('abort', () => finish({ err: { name: 'AbortError', message: 'The operation was aborted.' } }));
      }
    });
  };
  const createCred = function create(options) {
    if (!options || !options.publicKey) return P.reject(new DOMEx('Not supported here.', 'NotSupportedError'));
    return P.reject(new DOMEx('The operation either timed out or was not allowed.', 'NotAllowedError'));
  };
  define(navigator.credentials, 'get', { value: get, enumerable: false, configurable: false, writable: false });
  define(navigator.credentials, 'create', { value: createCred, enumerable: false, configurable: false, writable: false });
  define(Pkc, 'isConditionalMediationAvailable', { value: () => P.resolve(false), configurable: false, writable: false });
})();
