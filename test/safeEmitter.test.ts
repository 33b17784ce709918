import { describe, expect, it } from 'vitest';
import { SafeEmitter } from '../src/events.js';
import { recordingLogger } from './support/service.js';

describe('SafeEmitter', () => {
  it('delivers typed events, and a listener that throws is logged, never thrown into the emitter', () => {
    const { log, messages } = recordingLogger();
    const emitter = new SafeEmitter<{ tick: [{ n: number }] }>(log, 'test');
    const seen: number[] = [];
    emitter.events.on('tick', ({ n }) => seen.push(n));
    emitter.emit('tick', { n: 1 });
    emitter.events.on('tick', () => {
      throw new Error('a broken listener');
    });
    expect(() => emitter.emit('tick', { n: 2 })).not.toThrow();
    expect(seen).toEqual([1, 2]);
    expect(messages()).toEqual(['a listener of test events failed']);
  });
});
