// Chromium headless driven through the DevTools protocol: credentials are
// given with Fetch.continueWithAuth when Chromium asks (NTLM or Negotiate),
// as a user would type them in the browser's dialog.
//   node --experimental-websocket chromium-cdp.js CONFIG.json
// CONFIG: {chromium, dir, get, post, follow, user, password, body}
// prints one JSON line: {get, post, follow, auth, version}
'use strict';

const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
fs.mkdirSync(cfg.dir, { recursive: true });
fs.rmSync(path.join(cfg.dir, 'DevToolsActivePort'), { force: true });

const chrome = spawn(cfg.chromium, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
    '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
    '--ignore-certificate-errors', '--remote-debugging-port=0',
    '--user-data-dir=' + cfg.dir, 'about:blank'],
    { stdio: ['ignore', 'ignore', 'pipe'], env: process.env });
chrome.stderr.on('data', () => {});

const out = { auth: 0 };
const done = (o) => {
    console.log(JSON.stringify(Object.assign(out, o || {})));
    try { chrome.kill('SIGKILL'); } catch (e) { /* gone */ }
    process.exit(0);
};
setTimeout(() => done({ error: 'timeout' }), 60000);

function waitPort() {
    const f = path.join(cfg.dir, 'DevToolsActivePort');
    return new Promise((resolve) => {
        const tick = () => {
            if (fs.existsSync(f)) {
                const l = fs.readFileSync(f, 'utf8').split('\n');
                if (l.length >= 2 && l[1]) return resolve(l);
            }
            setTimeout(tick, 50);
        };
        tick();
    });
}

(async () => {
    const [port] = await waitPort();
    const info = await (await fetch(`http://127.0.0.1:${port}/json/version`)).json();
    out.version = info.Browser;
    const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
    const page = list.find((t) => t.type === 'page');
    const ws = new WebSocket(page.webSocketDebuggerUrl);
    let id = 0;
    const pending = new Map();
    const send = (method, params = {}) => new Promise((resolve) => {
        const n = ++id;
        pending.set(n, resolve);
        ws.send(JSON.stringify({ id: n, method, params }));
    });
    const statuses = {};
    ws.onmessage = (ev) => {
        const m = JSON.parse(ev.data);
        if (m.id && pending.has(m.id)) {
            pending.get(m.id)(m.result || { error: m.error });
            pending.delete(m.id);
            return;
        }
        if (m.method === 'Fetch.authRequired') {
            out.auth++;
            send('Fetch.continueWithAuth', { requestId: m.params.requestId,
                authChallengeResponse: { response: 'ProvideCredentials',
                    username: cfg.user, password: cfg.password } });
        } else if (m.method === 'Fetch.requestPaused') {
            send('Fetch.continueRequest', { requestId: m.params.requestId });
        } else if (m.method === 'Network.responseReceived') {
            statuses[m.params.response.url] = m.params.response.status;
        }
    };
    await new Promise((r) => { ws.onopen = r; });
    await send('Network.enable');
    await send('Fetch.enable', { handleAuthRequests: true,
        patterns: [{ urlPattern: '*' }] });

    await send('Page.enable');
    const loaded = new Promise((r) => {
        const prev = ws.onmessage;
        ws.onmessage = (ev) => {
            prev(ev);
            if (JSON.parse(ev.data).method === 'Page.loadEventFired') {
                ws.onmessage = prev;
                r();
            }
        };
    });
    await send('Page.navigate', { url: cfg.get });
    await loaded;
    out.get = statuses[cfg.get];

    const js = `(async () => {
        const f = await fetch(${JSON.stringify(cfg.follow)});
        const p = await fetch(${JSON.stringify(cfg.post)}, { method: 'POST',
            body: ${JSON.stringify(cfg.body)} });
        return JSON.stringify({ follow: f.status, post: p.status });
    })()`;
    const r = await send('Runtime.evaluate', { expression: js,
        awaitPromise: true, returnByValue: true });
    try {
        Object.assign(out, JSON.parse(r.result.value));
    } catch (e) {
        out.error = JSON.stringify(r);
    }
    done();
})().catch((e) => done({ error: String(e) }));
