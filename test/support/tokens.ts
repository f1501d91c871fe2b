import { SignJWT } from 'jose';

export const TEST_JWT_SECRET = 'test-secret-for-helssa-live-gateway-0123456789';

export function signToken(claims: { role: string; session?: string }, options: { secret?: string; expiresIn?: string } = {}): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('test')
    .setIssuedAt()
    .setExpirationTime(options.expiresIn ?? '1h')
    .sign(new TextEncoder().encode(options.secret ?? TEST_JWT_SECRET));
}
