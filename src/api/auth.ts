/**
 * Every endpoint takes a signed JWT (HS256 shared secret, or keys from a JWKS URL). Its claims say who
 * may do what: `role` is producer, viewer or service; `session` names the one session a producer or
 * viewer may touch (a service token without it may touch all).
 */
import { createHash } from 'node:crypto';
import { createRemoteJWKSet, errors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { z } from 'zod';
import { TOKEN_ROLES, type TokenRole } from '../../client-sdk/src/protocol.ts';
import { AuthError } from '../errors.ts';

export type Role = TokenRole;

export interface Principal {
  subject: string;
  role: Role;
  session?: string;
  /** Names this one token (a digest of it), for per-token limits; never the token itself. */
  tokenId: string;
}

export interface AuthOptions {
  secret?: string;
  jwksUrl?: string;
  issuer?: string;
  audience?: string;
  /** Longest lifetime accepted (`exp` minus now), seconds. */
  maxTtlS: number;
  /** Clock difference tolerated for `exp`, `nbf` and `iat`, seconds. */
  clockSkewS: number;
}

const claimsSchema = z.object({
  sub: z.string().optional(),
  role: z.enum(TOKEN_ROLES as [TokenRole, ...TokenRole[]]),
  session: z.string().min(1).optional(),
});

export class Authenticator {
  private readonly key: Uint8Array | JWTVerifyGetKey;
  private readonly options: AuthOptions;

  constructor(options: AuthOptions) {
    this.options = options;
    if (options.jwksUrl) this.key = createRemoteJWKSet(new URL(options.jwksUrl));
    else if (options.secret) this.key = new TextEncoder().encode(options.secret);
    else throw new Error('Authenticator needs a secret or a JWKS URL');
  }

  async verify(token: string | undefined): Promise<Principal> {
    if (!token) throw new AuthError(401, 'missing token: send Authorization: Bearer <jwt> or ?access_token=<jwt>');
    let payload: unknown;
    try {
      const verifyOptions = { issuer: this.options.issuer, audience: this.options.audience, requiredClaims: ['exp'], clockTolerance: this.options.clockSkewS };
      const result = typeof this.key === 'function'
        ? await jwtVerify(token, this.key, verifyOptions)
        : await jwtVerify(token, this.key, { ...verifyOptions, algorithms: ['HS256'] });
      payload = result.payload;
    } catch (error) {
      const reason =
        error instanceof errors.JWTExpired ? 'token expired'
        : error instanceof errors.JWTClaimValidationFailed && error.claim === 'exp' ? 'token has no expiry (exp): every token must expire'
        : error instanceof errors.JOSEError ? `invalid token (${error.code})`
        : 'invalid token';
      throw new AuthError(401, reason);
    }
    const { exp, iat } = payload as { exp: number; iat?: unknown };
    const now = Date.now() / 1000;
    if (exp - now > this.options.maxTtlS + this.options.clockSkewS) throw new AuthError(401, `token lives too long: at most ${this.options.maxTtlS} s from now`);
    if (iat !== undefined && (typeof iat !== 'number' || iat > now + this.options.clockSkewS)) throw new AuthError(401, 'token issued in the future (iat)');
    const claims = claimsSchema.safeParse(payload);
    if (!claims.success) throw new AuthError(401, 'token lacks a valid role claim (producer, viewer or service)');
    return { subject: claims.data.sub ?? 'anonymous', role: claims.data.role, session: claims.data.session, tokenId: createHash('sha256').update(token).digest('hex').slice(0, 32) };
  }

  /**
   * Throws 403 unless a token scoped to one session names that session: for endpoints that create a
   * session (its id must be the scope's) or that see every session (metrics: never a scoped token).
   */
  static authorizeScope(principal: Principal, sessionId: string | undefined): void {
    if (principal.session === undefined) return;
    if (sessionId === undefined) throw new AuthError(403, `token is scoped to session ${principal.session}: name that session, or use an unscoped token`);
    if (sessionId !== principal.session) throw new AuthError(403, `token is for session ${principal.session}, not ${sessionId}`);
  }

  /** Throws 403 unless the principal has one of `roles` and may touch `sessionId`. */
  static authorize(principal: Principal, roles: readonly Role[], sessionId?: string): void {
    if (!roles.includes(principal.role)) throw new AuthError(403, `role ${principal.role} may not use this endpoint (needs ${roles.join(' or ')})`);
    if (sessionId && principal.session !== undefined && principal.session !== sessionId) {
      throw new AuthError(403, `token is for session ${principal.session}, not ${sessionId}`);
    }
    if (sessionId && principal.session === undefined && principal.role !== 'service') {
      throw new AuthError(403, 'token names no session');
    }
  }
}
