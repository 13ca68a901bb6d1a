// A real OpenID provider for tre's tests: the certified `oidc-provider` package, on loopback.
// Version 8 (package-lock.json): it runs on Debian 12's Node.js 18 as well as on Node 20+;
// version 9 needs Node >= 20.18 (URL.parse).
//
// Started by tests/oidc/provider_server.py with its settings in the environment:
//   TRE_TEST_OIDC_PANEL_URL  origin of the panel under test (its client's redirect URIs)
//   TRE_TEST_OIDC_ACCOUNTS   JSON {"login": ["role", ...]}: who may sign in, with which tre roles
//   TRE_TEST_OIDC_SECRET     the panel client's secret
// It listens on 127.0.0.1 on a free port, names itself http://localhost:<port> (another
// site than the panel on 127.0.0.1, so the browser's cross-site cookie rules apply), and
// prints one JSON line {"issuer": ...} once it is ready.
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const panelUrl = process.env.TRE_TEST_OIDC_PANEL_URL;
const accounts = JSON.parse(process.env.TRE_TEST_OIDC_ACCOUNTS || '{}');
const secret = process.env.TRE_TEST_OIDC_SECRET;
const audience = 'tre-api';
const resource = 'urn:tre:api';

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

function rolesOf(accountId) {
  return accounts[accountId] || [];
}

function configuration() {
  return {
    clients: [
      {
        // The DAC panel: a confidential web client, authorization code with PKCE.
        client_id: 'tre-panel',
        client_secret: secret,
        redirect_uris: [`${panelUrl}/panel/oidc/callback`],
        post_logout_redirect_uris: [`${panelUrl}/panel/login`],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        // The CLI: a public client with the device authorization grant (RFC 8628).
        client_id: 'tre-cli',
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        grant_types: ['urn:ietf:params:oauth:grant-type:device_code'],
        response_types: [],
        redirect_uris: [],
      },
    ],
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    // PKCE with S256 only, for every authorization request, public or confidential client.
    pkce: { methods: ['S256'], required: () => true },
    scopes: ['openid', 'tre', 'offline_access'],
    claims: { openid: ['sub'], tre: ['tre_roles'] },
    async findAccount(ctx, id) {
      if (!Object.hasOwn(accounts, id)) return undefined;
      return { accountId: id, async claims() { return { sub: id, tre_roles: rolesOf(id) }; } };
    },
    // The tre roles ride in the access token too: the API reads them there.
    async extraTokenClaims(ctx, token) {
      return token.accountId ? { tre_roles: rolesOf(token.accountId) } : undefined;
    },
    ttl: {
      AccessToken: Number(process.env.TRE_TEST_OIDC_ACCESS_TTL || 600),
      IdToken: 600,
      DeviceCode: 300,
      Grant: 600,
      Interaction: 600,
      Session: 600,
    },
    features: {
      devInteractions: { enabled: true },
      deviceFlow: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'tre',
          audience,
          accessTokenFormat: 'jwt',
          accessTokenTTL: Number(process.env.TRE_TEST_OIDC_ACCESS_TTL || 600),
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  };
}

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://localhost:${port}`;
  let provider;
  try {
    provider = new Provider(issuer, configuration());
  } catch (error) {
    // Say why on stderr (the fixture shows its log) rather than hang without an issuer line.
    console.error('the provider did not start:', error);
    process.exit(1);
  }
  // A login the accounts table does not know ends the interaction with access_denied, as a
  // real provider refuses an unknown user.
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
