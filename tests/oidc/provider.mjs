// A real OpenID provider (oidc-provider) for the single sign-on tests, on loopback only.
//
//   node provider.mjs --port 9000 --client-id hokusai --client-secret s3cret \
//       --redirect-uri http://127.0.0.1:8080/auth/callback [--user '{"email": ...}']
//
// Each option falls back to an environment variable (OIDC_PORT, OIDC_CLIENT_ID,
// OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI, OIDC_USER). The issuer is http://127.0.0.1:<port>.
// One confidential client, authorization code flow with PKCE (S256) required. Whoever
// reaches the sign-in step is the one test user, without a form: a browser test then drives
// only the relying party, and the provider's own pages never need filling in.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const DEFAULT_USER = {
  sub: 'ana',
  email: 'ana@example.com',
  email_verified: true,
  name: 'Ana Lovelace',
  groups: ['gtm-admins'],
};

function options() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: process.env.OIDC_PORT },
      'client-id': { type: 'string', default: process.env.OIDC_CLIENT_ID },
      'client-secret': { type: 'string', default: process.env.OIDC_CLIENT_SECRET },
      'redirect-uri': { type: 'string', default: process.env.OIDC_REDIRECT_URI },
      user: { type: 'string', default: process.env.OIDC_USER },
    },
  });
  for (const name of ['port', 'client-id', 'client-secret', 'redirect-uri']) {
    if (!values[name]) {
      throw new Error(`--${name} is required`);
    }
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`--port must be a TCP port, not ${values.port}`);
  }
  // A test may sign in as someone else (another e-mail address, no admin group).
  const user = { ...DEFAULT_USER, ...(values.user ? JSON.parse(values.user) : {}) };
  return {
    port,
    clientId: values['client-id'],
    clientSecret: values['client-secret'],
    redirectUri: values['redirect-uri'],
    user,
  };
}

function configuration({ clientId, clientSecret, redirectUri, user }) {
  // A fresh signing key per run: nothing of the provider outlives the test that started it.
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [redirectUri],
        response_types: ['code'],
        grant_types: ['authorization_code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    responseTypes: ['code'],
    // PKCE for every client, confidential ones too, as the gateway is to use it.
    pkce: { required: () => true },
    jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256' }] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    scopes: ['openid', 'email', 'profile', 'groups'],
    // The groups come with `profile` (what a relying party asks for by default) and with a
    // `groups` scope of their own, as many identity providers name it.
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'groups'],
      groups: ['groups'],
    },
    // The ID token carries the claims of the granted scopes even in the code flow, so a
    // relying party need not call the userinfo endpoint to learn the e-mail and groups.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: (_ctx, sub) => {
      if (sub !== user.sub) {
        return undefined;
      }
      return { accountId: sub, claims: () => ({ ...user }) };
    },
    ttl: {
      AccessToken: 600,
      AuthorizationCode: 60,
      IdToken: 600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
  };
}

// The sign-in and consent steps, answered at once for the test user: whatever the prompt
// lacks (a session, scopes, claims) is granted, and the browser goes straight on.
function interactions(provider, user) {
  return async (ctx, next) => {
    const match = /^\/interaction\/([\w-]+)$/.exec(ctx.path);
    if (!match || ctx.method !== 'GET') {
      return next();
    }
    const { prompt, params, session, grantId } = await provider.interactionDetails(
      ctx.req,
      ctx.res,
    );
    let result;
    if (prompt.name === 'login') {
      result = { login: { accountId: user.sub } };
    } else if (prompt.name === 'consent') {
      const grant = grantId
        ? await provider.Grant.find(grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const { missingOIDCScope, missingOIDCClaims } = prompt.details;
      if (missingOIDCScope) {
        grant.addOIDCScope(missingOIDCScope.join(' '));
      }
      if (missingOIDCClaims) {
        grant.addOIDCClaims(missingOIDCClaims);
      }
      result = { consent: { grantId: await grant.save() } };
    } else {
      ctx.throw(501, `prompt ${prompt.name} is not handled`);
    }
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
      mergeWithLastSubmission: true,
    });
    ctx.redirect(returnTo);
  };
}

function main() {
  const settings = options();
  const issuer = `http://127.0.0.1:${settings.port}`;
  const provider = new Provider(issuer, configuration(settings));
  provider.use(interactions(provider, settings.user));
  const server = provider.listen(settings.port, '127.0.0.1', () => {
    console.log(`oidc-provider listening on ${issuer}`);
  });
  // Nothing to flush: a test's provider ends at once, open connections and all.
  const stop = () => process.exit(0);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
