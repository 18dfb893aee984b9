/**
 * Summarises V8 CPU profiles (`node --cpu-prof`): self time by area of the code and the
 * functions that take the most, so a profile of the Eventful server can be read in the output.
 */
import fs from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  /** Sampled time not idle. */
  busyMs: number;
  /** Self time by area (idle excluded from the shares), largest first. */
  areas: Array<{ area: string; ms: number; share: number }>;
  top: Array<{ fn: string; where: string; ms: number; share: number }>;
}

function areaOf(fn: string, url: string): string {
  if (fn === '(garbage collector)') return 'garbage collection';
  if (fn === '(idle)') return 'idle';
  if (fn === '(program)') return 'V8/native (program)';
  const m = /\/src\/([a-z-]+)\//.exec(url) ?? /\/dist\/([a-z-]+)\//.exec(url);
  if (m !== null) return `eventful ${m[1]}/`;
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm !== null) return `dependency ${nm[1]}`;
  if (url.startsWith('node:')) return `node ${url.slice(5).split('/')[0]}`;
  if (url === '') return `native ${fn === '' ? '(anonymous)' : fn}`;
  return 'other';
}

export function summarizeProfile(file: string, topN = 15): ProfileSummary {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
  const byId = new Map<number, ProfileNode>(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  const areas = new Map<string, number>();
  const fns = new Map<string, { fn: string; where: string; us: number }>();
  let busyUs = 0;
  let totalUs = 0;
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (n === undefined) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    const area = areaOf(functionName, url);
    totalUs += us;
    areas.set(area, (areas.get(area) ?? 0) + us);
    if (area === 'idle') continue;
    busyUs += us;
    const where = url === '' ? '' : `${url.replace(/^.*\/(src|dist|node_modules)\//, '$1/').replace(/^file:\/\//, '')}:${lineNumber + 1}`;
    const key = `${functionName}@${where}`;
    const f = fns.get(key) ?? { fn: functionName || '(anonymous)', where, us: 0 };
    f.us += us;
    fns.set(key, f);
  }
  return {
    file: path.basename(file),
    totalMs: totalUs / 1000,
    busyMs: busyUs / 1000,
    areas: [...areas.entries()]
      .filter(([a]) => a !== 'idle')
      .map(([area, us]) => ({ area, ms: us / 1000, share: us / busyUs }))
      .sort((a, b) => b.ms - a.ms),
    top: [...fns.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map((f) => ({ fn: f.fn, where: f.where, ms: f.us / 1000, share: f.us / busyUs })),
  };
}

export function formatProfile(s: ProfileSummary): string[] {
  const lines = [`CPU profile ${s.file}: ${(s.totalMs / 1000).toFixed(1)} s sampled, ${(s.busyMs / 1000).toFixed(1)} s busy; self time by area (share of busy time):`];
  for (const a of s.areas.slice(0, 14)) lines.push(`  ${a.area.padEnd(36)} ${(a.share * 100).toFixed(1).padStart(5)}%  ${(a.ms / 1000).toFixed(2)} s`);
  lines.push('  top functions by self time:');
  for (const f of s.top) lines.push(`  ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.fn}  ${f.where}`);
  return lines;
}
