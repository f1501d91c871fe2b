/**
 * The sessions of this gateway. A session lives in the database; it is loaded into memory when a
 * producer, viewer or API call first touches it, and created then if it does not exist. Loading a session
 * that a previous gateway process left behind (killed mid-visit) ends the tracks it had live, marks the
 * windows it was still transcribing as failed (their audio died with it), and keeps every stored final.
 */
import type { FinalEvent, IngestFormat, SpeakerRole } from '../../client-sdk/src/protocol.ts';
import { SessionExistsError } from '../errors.ts';
import { checkLanguage } from './languages.ts';
import { Session, type SessionDependencies } from './session.ts';
import { endInterruptedTracks } from './track-table.ts';
import type { SessionStatus } from '../../client-sdk/src/protocol.ts';
import { sessionStatus } from './session-status.ts';



export class SessionRegistry {
  private readonly sessions = new Map<string, Promise<Session | undefined>>();
  private readonly deps: SessionDependencies;

  constructor(deps: Omit<SessionDependencies, 'onIdle'>) {
    this.deps = { ...deps, onIdle: (session) => this.evict(session) };
  }

  /** Sessions held in memory now (live, watched, or not yet completed). */
  get loaded(): number {
    return this.sessions.size;
  }

  /** The session, loaded from the database if needed; undefined when it does not exist. */
  get(id: string): Promise<Session | undefined> {
    return this.sessions.get(id) ?? this.cache(id, false);
  }

  /**
   * The REST status; undefined when the session does not exist. A completed session not in memory is
   * described from the store and stays out of memory.
   */
  async status(id: string): Promise<SessionStatus | undefined> {
    const held = this.sessions.get(id);
    if (!held && (await this.deps.store.getSession(id))?.state === 'completed') return sessionStatus(this.deps.store, this.deps.archiver, id);
    return (await (held ?? this.get(id)))?.status();
  }

  /** A completed session nobody watches leaves memory; the store holds all of it. */
  evict(session: Session): void {
    void this.sessions.get(session.id)?.then((held) => {
      if (held !== session) return;
      this.sessions.delete(session.id);
      session.dispose();
    });
  }

  /** A deleted session leaves memory; its viewers are told (4410) and disconnected. */
  async forget(id: string, code: number, reason: string): Promise<void> {
    const held = this.sessions.get(id);
    if (!held) return;
    this.sessions.delete(id);
    const session = await held.catch(() => undefined);
    session?.closeViewers(code, reason);
    session?.dispose();
  }

  async getOrCreate(id: string): Promise<Session> {
    const existing = await this.get(id);
    if (existing) return existing;
    return (await (this.sessions.get(id) ?? this.cache(id, true)))!;
  }

  async create(values: { id: string; encounterRef?: string; encounterType?: string; language?: string; vocabulary?: string[] }): Promise<Session> {
    checkLanguage(values.language, this.deps.languages);
    if (!(await this.deps.store.createSession(values))) throw new SessionExistsError(`session ${values.id} exists already`);
    return (await this.cache(values.id, false))!;
  }

  /** The recognizer started or stopped refusing requests: every loaded session's viewers are told. */
  sttStateChanged(): void {
    for (const loading of this.sessions.values()) void loading.then((session) => session?.sttStateChanged(), () => undefined);
  }

  /** Shutdown: every loaded session hands its live tracks' last words to the store and to viewers. */
  async drain(): Promise<void> {
    const loaded = await Promise.allSettled([...this.sessions.values()]);
    await Promise.all(loaded.map((r) => (r.status === 'fulfilled' && r.value ? r.value.drain() : undefined)));
  }

  /** At start: finishes the finalization of sessions a previous process was ending. */
  async resumeEnding(): Promise<void> {
    for (const row of await this.deps.store.sessionsInState('ending')) {
      const session = await this.get(row.id);
      this.deps.log.info({ sessionId: row.id }, 'resuming the finalization of a session');
      await session?.end();
    }
  }

  /** Loads (creating when asked) and caches; a session found missing is not cached. */
  private cache(id: string, create: boolean): Promise<Session | undefined> {
    const loading = this.load(id, create);
    this.sessions.set(id, loading);
    loading.then((session) => session ?? this.sessions.delete(id), () => this.sessions.delete(id));
    return loading;
  }

  private async load(sessionId: string, create: boolean): Promise<Session | undefined> {
    const { store } = this.deps;
    if (create) await store.createSession({ id: sessionId });
    const row = await store.getSession(sessionId);
    if (!row) return undefined;
    let trackRows = await store.listTracks(sessionId);
    if (trackRows.some((t) => t.state === 'live' && t.format !== 'upload')) {
      const interrupted = await endInterruptedTracks(this.deps, sessionId);
      if (interrupted.length > 0) {
        this.deps.log.warn({ sessionId, tracks: interrupted }, 'session was interrupted: ending the tracks a stopped gateway had live');
        trackRows = await store.listTracks(sessionId);
      }
    }
    const finals: FinalEvent[] = await store.listSegments(sessionId);
    // A track resumes after everything stored for it: its recorded position or its last final.
    const tracks = trackRows.map((t) => ({
      trackId: t.trackId,
      role: t.role as SpeakerRole,
      participant: t.participant,
      format: t.format as IngestFormat | 'upload',
      // An upload's track stays live while its windows are in the queue (UploadService resumes it).
      state: t.format === 'upload' && t.state === 'live' ? ('live' as const) : ('ended' as const),
      receivedMs: Math.max(t.receivedMs, ...finals.filter((f) => f.trackId === t.trackId).map((f) => Math.ceil(f.endMs))),
    }));
    const epochs = new Map(trackRows.map((t) => [t.trackId, t.epoch]));
    // Live tracks another living gateway holds: shown live until that gateway says otherwise.
    const heldElsewhere = tracks.flatMap((t, i) => (trackRows[i].state === 'live' && t.format !== 'upload' ? [{ ...t, state: 'live' as const, epoch: trackRows[i].epoch }] : []));
    return new Session(row, finals, tracks, epochs, this.deps, heldElsewhere);
  }
}
