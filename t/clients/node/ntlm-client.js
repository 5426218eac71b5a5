// NTLM through httpntlm's own NTLM implementation (npm httpntlm, pinned
// in package.json) and Node's HTTP client, one keep-alive connection:
//   node ntlm-client.js URL USER DOMAIN PASSWORD [METHOD [BODY]]
// prints one JSON line: {type1, type2, final, follow, user, conns}
'use strict';

const http = require('http');
const https = require('https');
const ntlm = require('httpntlm/ntlm');

const [url, username, domain, password, method = 'GET', body] =
    process.argv.slice(2);
const u = new URL(url);
const mod = u.protocol === 'https:' ? https : http;
const agent = new mod.Agent({ keepAlive: true, maxSockets: 1 });
const sockets = new Set();
const opts = { username, password, domain, workstation: 'NODE' };

function request(m, path, auth, data) {
    return new Promise((resolve, reject) => {
        const headers = {};
        if (auth) headers.Authorization = auth;
        if (data !== undefined) headers['Content-Length'] = Buffer.byteLength(data);
        const req = mod.request({ host: u.hostname, port: u.port, path, method: m,
            agent, headers, rejectUnauthorized: false }, (res) => {
            sockets.add(res.socket);
            res.resume();
            res.on('end', () => resolve(res));
        });
        req.on('error', reject);
        if (data !== undefined) req.write(data);
        req.end();
    });
}

(async () => {
    const out = {};
    const r1 = await request(method, u.pathname, ntlm.createType1Message(opts),
        method === 'GET' ? undefined : '');
    out.type1 = r1.statusCode;
    const www = [].concat(r1.headers['www-authenticate'] || []).join(', ');
    const t2 = ntlm.parseType2Message(www.match(/NTLM [A-Za-z0-9+/=]+/)[0],
        (e) => { throw e; });
    out.type2 = t2 ? 'ok' : 'none';
    const r2 = await request(method, u.pathname, ntlm.createType3Message(t2, opts),
        body);
    out.final = r2.statusCode;
    out.user = r2.headers['x-kcd-user'];
    const r3 = await request('GET', u.pathname + 'again', null);
    out.follow = r3.statusCode;
    out.conns = sockets.size;
    console.log(JSON.stringify(out));
    agent.destroy();
})().catch((e) => { console.log(JSON.stringify({ error: String(e) })); });
