import { getRun, getRunningRunId, markRunFailed } from '../db/runs.js';
import type { Events } from '../events.js';
import { SafeEmitter } from '../events.js';
import type { RunReport, RunTrigger } from '../core/model.js';
import { emptyCounts } from '../core/model.js';
import type { RunAsk, RunScope } from '../core/scope.js';
import { covers } from '../core/scope.js';
import type { DryRunAnswer } from './dryRun.js';
import { dryRun } from './dryRun.js';
import type { EventBatchOptions, EventBatchOutcome } from './eventBatch.js';
import { runEventBatch } from './eventBatch.js';
import type { RunDeps } from './fullRun.js';
import { RunFailedError, runPipeline } from './fullRun.js';

export class RunInProgressElsewhereError extends Error {
  override name = 'RunInProgressElsewhereError';
}

/** What a trigger asks for: a run of the whole bucket (incremental or full), or of a scope. */
export interface TriggerOptions {
  trigger: RunTrigger;
  full?: boolean;
  scope?: RunScope | null;
}

const askOf = (opts: TriggerOptions): RunAsk => ({ full: (opts.full ?? false) && !opts.scope, scope: opts.scope ?? null });

export interface Triggered {
  runId: number;
  /** False when the trigger joined a run already in progress, here or on another instance. */
  started: boolean;
  /** Settles with the finished run's report (status succeeded, failed or aborted). */
  done: Promise<RunReport>;
}

/** What a Runner reports as it goes, for metrics, logs and whoever waits on it. */
export interface RunnerEvents {
  /** This process started a run. */
  runStarted: [{ runId: number; trigger: RunTrigger; full: boolean }];
  /** A trigger joined a run in progress, of this process or (remote) of another instance. */
  runJoined: [{ runId: number; trigger: RunTrigger; remote: boolean }];
  /** A trigger the run in progress does not cover (see covers) waits for it to end, then starts its own. */
  runWaiting: [{ runId: number; trigger: RunTrigger; remote: boolean }];
  /** A run of this process is about to record its outcome: a trigger from now on starts a new run. */
  runEnding: [{ runId: number }];
  /** A run this process carried out is over, whatever its status (runs it joined are not reported). */
  runFinished: [{ report: RunReport }];
  /** An event batch of this process is over (it may have found nothing to do, or the events lock taken). */
  eventBatch: [{ outcome: EventBatchOutcome }];
  /** An event batch of this process failed; its events stay pending. */
  eventBatchFailed: [{ err: unknown }];
  /** Shutdown began: it waits up to graceMs for the run and the event batch of this process, if any. */
  shuttingDown: [{ graceMs: number; run: boolean; eventBatch: boolean }];
  /** The grace period ran out with work in progress: it is aborted. */
  aborting: [{ run: boolean; eventBatch: boolean }];
}

// How long to wait for another instance's run, which holds the lock, to record its row.
const REMOTE_RUN_APPEAR_MS = 2000;
const REMOTE_POLL_MS = 200;
// How long a trigger keeps trying while another process holds the lock without a run to join.
const START_WAIT_MS = 30_000;

/**
 * Makes sure runs never overlap: within this process a trigger during a run joins that run;
 * across processes the PostgreSQL advisory lock in runPipeline decides, and a trigger that
 * loses gets the other instance's run back.
 */
export class Runner {
  // A listener that throws must not break the bookkeeping of runs.
  private readonly emitter: SafeEmitter<RunnerEvents>;
  readonly events: Events<RunnerEvents>;
  private current: Promise<Triggered> | null = null;
  /**
   * Whether the current run is recording its outcome (past that, joining it would miss what is
   * asked now), and what its trigger asked for (a trigger it does not cover must not join it).
   */
  private currentSlot: { ending: boolean; ask: RunAsk } = { ending: false, ask: { full: false, scope: null } };
  /** An event batch of this process in progress; it goes on beside runs. */
  private eventBatch: Promise<unknown> | null = null;
  private readonly abort = new AbortController();
  /** Failures we could not record because the database was down; written on the next try. */
  private readonly unrecorded = new Map<number, string>();

  constructor(
    private readonly deps: RunDeps,
    /** Called with the report of each run this process carried out (not runs it joined). */
    private readonly onFinished: (report: RunReport) => void = () => undefined,
  ) {
    this.emitter = new SafeEmitter(deps.log, 'run');
    this.events = this.emitter.events;
  }

  /**
   * Starts a run, or joins the one in progress when it covers what this trigger asks for
   * (covers, in core/scope.ts: a full run covers all; an incremental run only incremental
   * triggers; a scoped run only scoped triggers inside its scope). A trigger it does not cover
   * is never dropped: it waits for that run to end, then starts its own run (or joins one that
   * covers it), so a full or targeted reprocess asked for during another run still happens.
   */
  trigger(opts: TriggerOptions): Promise<Triggered> {
    if (this.current && !this.currentSlot.ending && !covers(this.currentSlot.ask, askOf(opts))) {
      // Started once this run's slot is cleared (the reaction trigger() put on its done first).
      return this.current
        .then((t) => {
          this.emitter.emit('runWaiting', { runId: t.runId, trigger: opts.trigger, remote: !t.started });
          return t.done;
        })
        .then(
          () => this.trigger(opts),
          () => this.trigger(opts),
        );
    }
    if (this.current && this.currentSlot.ending) {
      // Its status may already read finished: start anew once its slot is cleared (by the
      // reaction trigger() put on its done first, so it runs before this one).
      return this.current.then((t) => t.done).then(
        () => this.trigger(opts),
        () => this.trigger(opts),
      );
    }
    if (this.current) {
      return this.current.then((t) => {
        this.emitter.emit('runJoined', { runId: t.runId, trigger: opts.trigger, remote: !t.started });
        return { ...t, started: false };
      });
    }
    const slot = { ending: false, ask: askOf(opts) };
    const attempt = this.start(opts, slot);
    this.current = attempt;
    this.currentSlot = slot;
    // Clear the slot once the run (or the attempt to start one) is over.
    attempt.then(
      (t) => t.done.finally(() => this.release(attempt)).catch(() => undefined),
      () => this.release(attempt),
    );
    return attempt;
  }

  /**
   * What a run with these options would do now (runs/dryRun.ts). Takes no lock and never joins
   * or waits for a run: it writes nothing. Stops when `signal` aborts (the client went away) or
   * the service shuts down.
   */
  dryRun(opts: { full?: boolean; scope?: RunScope | null; signal?: AbortSignal; listLimit?: number }): Promise<DryRunAnswer> {
    const signal = opts.signal ? AbortSignal.any([opts.signal, this.abort.signal]) : this.abort.signal;
    return dryRun(this.deps, { ...opts, full: opts.full ?? false, scope: opts.scope ?? null, signal });
  }

  /**
   * Processes one batch of pending events, unless this process has one in progress. A run in
   * progress does not hold it up: events must not wait for a long run or an export.
   */
  async runEvents(opts: Omit<EventBatchOptions, 'signal'>): Promise<EventBatchOutcome> {
    if (this.eventBatch || this.abort.signal.aborted) return { kind: 'busy' };
    const batch = runEventBatch(this.deps, { ...opts, signal: this.abort.signal });
    this.eventBatch = batch;
    try {
      const outcome = await batch;
      this.emitter.emit('eventBatch', { outcome });
      return outcome;
    } catch (err) {
      this.emitter.emit('eventBatchFailed', { err });
      throw err;
    } finally {
      this.eventBatch = null;
    }
  }

  /**
   * Waits up to graceMs for a run in progress to finish, then aborts it: it stops between
   * batches, keeping what it committed, and is recorded as aborted.
   */
  async shutdown(graceMs: number): Promise<void> {
    const busy = { run: this.current !== null, eventBatch: this.eventBatch !== null };
    this.emitter.emit('shuttingDown', { graceMs, ...busy });
    if (!busy.run && !busy.eventBatch) {
      this.abort.abort();
      return;
    }
    const done = Promise.allSettled([this.current?.then((t) => t.done), this.eventBatch]);
    const timer = setTimeout(() => {
      this.emitter.emit('aborting', { run: this.current !== null, eventBatch: this.eventBatch !== null });
      this.abort.abort();
    }, graceMs);
    await done;
    clearTimeout(timer);
    this.abort.abort();
  }

  private release(attempt: Promise<Triggered>): void {
    if (this.current === attempt) this.current = null;
  }

  private async start(opts: TriggerOptions, slot: { ending: boolean }): Promise<Triggered> {
    await this.recordUnrecorded();
    let deadline = Date.now() + START_WAIT_MS;
    for (;;) {
      const attempt = await this.attempt(opts, slot);
      if (!('busy' in attempt)) return attempt;
      // Another process holds the lock: join its run (event runs are never one, see getRunningRunId).
      const runId = attempt.busy ?? (await this.waitForRemoteRun());
      const run = runId === null ? null : await getRun(this.deps.db, runId, 0);
      if (run?.status === 'running') {
        const ask = { full: run.full, scope: run.scope && { userIds: run.scope.user_ids, prefix: run.scope.prefix } };
        if (covers(ask, askOf(opts))) {
          this.emitter.emit('runJoined', { runId: run.id, trigger: opts.trigger, remote: true });
          return { runId: run.id, started: false, done: this.waitForRemoteFinish(run.id) };
        }
        // Its run does not cover this trigger: once it ends, try again.
        this.emitter.emit('runWaiting', { runId: run.id, trigger: opts.trigger, remote: true });
        await this.waitForRemoteFinish(run.id);
        deadline = Date.now() + START_WAIT_MS;
        continue;
      }
      if (Date.now() > deadline) throw new RunInProgressElsewhereError('another instance holds the run lock without running a run');
    }
  }

  /** One try at starting a run: it started (or finished at once), or another process is busy. */
  private async attempt(opts: TriggerOptions, slot: { ending: boolean }): Promise<Triggered | { busy: number | null }> {
    const { db, log } = this.deps;
    let announce!: (id: number) => void;
    const started = new Promise<number>((resolve) => (announce = resolve));
    const onEnding = (runId: number) => {
      slot.ending = true;
      this.emitter.emit('runEnding', { runId });
    };
    const outcome = runPipeline(this.deps, { ...opts, signal: this.abort.signal, onStart: (id) => announce(id), onEnding });

    const first = await Promise.race([started.then((id) => ({ id })), outcome.then((o) => ({ o }))]);
    if ('id' in first) {
      const done = outcome.then(
        (o) => {
          if (o.kind !== 'finished') throw new Error('unreachable: a started run cannot be busy');
          return o.report;
        },
        async (err: unknown) => {
          if (!(err instanceof RunFailedError)) throw err;
          const recorded = await getRun(db, err.runId).catch(() => null);
          if (recorded && recorded.status !== 'running') return recorded;
          this.unrecorded.set(err.runId, err.message);
          log.warn({ runId: err.runId }, 'run failure not yet recorded; will record it when the database is back');
          return this.synthesizeFailed(err.runId, err.message, opts);
        },
      );
      this.emitter.emit('runStarted', { runId: first.id, trigger: opts.trigger, full: askOf(opts).full });
      done.then((report) => this.finished(report), () => undefined);
      return { runId: first.id, started: true, done };
    }
    const o = first.o;
    if (o.kind === 'finished') {
      this.emitter.emit('runStarted', { runId: o.report.id, trigger: opts.trigger, full: askOf(opts).full });
      this.finished(o.report);
      return { runId: o.report.id, started: true, done: Promise.resolve(o.report) };
    }
    return { busy: o.runId };
  }

  private finished(report: RunReport): void {
    this.onFinished(report);
    this.emitter.emit('runFinished', { report });
  }

  private async recordUnrecorded(): Promise<void> {
    for (const [id, reason] of this.unrecorded) {
      await markRunFailed(this.deps.db, id, reason);
      this.unrecorded.delete(id);
    }
  }

  /** The run of the process holding the lock, once it records one; null if none shows within a while. */
  private async waitForRemoteRun(): Promise<number | null> {
    const deadline = Date.now() + REMOTE_RUN_APPEAR_MS;
    while (Date.now() < deadline) {
      const id = await getRunningRunId(this.deps.db);
      if (id !== null) return id;
      await sleep(REMOTE_POLL_MS / 4);
    }
    return null;
  }

  private async waitForRemoteFinish(runId: number): Promise<RunReport> {
    for (;;) {
      const run = await getRun(this.deps.db, runId);
      if (!run) throw new Error(`run ${runId} disappeared`);
      if (run.status !== 'running') return run;
      await sleep(REMOTE_POLL_MS);
    }
  }

  private synthesizeFailed(id: number, reason: string, opts: TriggerOptions): RunReport {
    const now = new Date().toISOString();
    return {
      id,
      trigger: opts.trigger,
      full: askOf(opts).full,
      status: 'failed',
      started_at: now,
      finished_at: now,
      output_written: false,
      progress: { phase: 'done', done: 0, total: null },
      error: reason,
      counts: emptyCounts(),
      rejected: [],
      warnings: [],
      workers: [],
      issues_left_out: 0,
      scope: opts.scope ? { user_ids: opts.scope.userIds, prefix: opts.scope.prefix } : null,
    };
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
