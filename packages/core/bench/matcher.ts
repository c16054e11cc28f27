/**
 * Matcher benchmark: MatcherIndex against qlobber (QlobberDedup, `*` = one word, `**` = zero or
 * more words: the same semantics for these shapes) at 1,000 and 100,000 subscriptions of mixed
 * shapes `a.b.c`, `a.*.c`, `*.x`, `a.**`. Checks that both agree with the micromatch oracle on a
 * sample, then reports matches/s (cold: every topic new to the result cache; hot: a working set
 * of repeated topics), build time and heap per subscription.
 *
 *   node --expose-gc --conditions=@omnibus/source packages/core/bench/matcher.ts
 */
import qlobber from 'qlobber'
import { MatcherIndex, oracleMatch } from '../src/matcher.ts'

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {})

function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

function patterns(n: number, vocab: number, rand: () => number): string[] {
  const w = () => `w${Math.floor(rand() * vocab)}`
  const out: string[] = []
  for (let i = 0; i < n; i++) {
    switch (i % 4) {
      case 0:
        out.push(`${w()}.${w()}.${w()}`)
        break
      case 1:
        out.push(`${w()}.*.${w()}`)
        break
      case 2:
        out.push(`*.${w()}`)
        break
      default:
        out.push(`${w()}.**`)
    }
  }
  return out
}

function topics(n: number, vocab: number, rand: () => number): string[] {
  const w = () => `w${Math.floor(rand() * vocab)}`
  const out: string[] = []
  for (let i = 0; i < n; i++) out.push(rand() < 0.5 ? `${w()}.${w()}` : `${w()}.${w()}.${w()}`)
  return out
}

function heapUsed(): number {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

function time(fn: () => void): number {
  const t0 = process.hrtime.bigint()
  fn()
  return Number(process.hrtime.bigint() - t0) / 1e6
}

/**
 * Matches/s of two matchers over the same topics, interleaved in small chunks so that bursts of
 * load on a shared machine fall on both sides alike.
 */
function rates(
  topicList: string[],
  rounds: number,
  ours: (t: string) => number,
  theirs: (t: string) => number,
): [number, number] {
  let sink = 0
  for (const t of topicList.slice(0, 2000)) sink += ours(t) + theirs(t) // warm-up
  const chunk = 2000
  let msOurs = 0
  let msTheirs = 0
  for (let r = 0; r < rounds; r++) {
    for (let start = 0; start < topicList.length; start += chunk) {
      const part = topicList.slice(start, start + chunk)
      msOurs += time(() => {
        for (const t of part) sink += ours(t)
      })
      msTheirs += time(() => {
        for (const t of part) sink += theirs(t)
      })
    }
  }
  if (sink < 0) console.log(sink)
  const total = topicList.length * rounds
  return [total / (msOurs / 1000), total / (msTheirs / 1000)]
}

function fmt(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(0)
}

const rows: string[][] = []
for (const n of [1_000, 100_000]) {
  const vocab = Math.max(20, Math.round(Math.sqrt(n) * 2))
  const pats = patterns(n, vocab, rng(n))
  const cold = topics(200_000, vocab, rng(n + 1))
  const hot = topics(1_000, vocab, rng(n + 2))

  let h0 = heapUsed()
  let ours: MatcherIndex<number> | undefined
  const buildOurs = time(() => {
    ours = new MatcherIndex<number>()
    for (let i = 0; i < pats.length; i++) ours.add(pats[i] as string, i)
  })
  const heapOurs = heapUsed() - h0
  h0 = heapUsed()
  let theirs: InstanceType<typeof qlobber.QlobberDedup<number>> | undefined
  const buildTheirs = time(() => {
    theirs = new qlobber.QlobberDedup<number>({ separator: '.', wildcard_one: '*', wildcard_some: '**' })
    for (let i = 0; i < pats.length; i++) theirs.add(pats[i] as string, i)
  })
  const heapTheirs = heapUsed() - h0
  const a = ours as MatcherIndex<number>
  const b = theirs as InstanceType<typeof qlobber.QlobberDedup<number>>

  // Correctness on a sample: both against the oracle.
  let checked = 0
  let matchedPairs = 0
  for (const t of cold.slice(0, n >= 100_000 ? 40 : 400)) {
    const want = pats.flatMap((p, i) => (oracleMatch(p, t) ? [i] : [])).sort((x, y) => x - y)
    const got = [...a.match(t)].sort((x, y) => x - y)
    const q = [...b.match(t)].sort((x, y) => x - y)
    if (JSON.stringify(got) !== JSON.stringify(want))
      throw new Error(`MatcherIndex disagrees with the oracle on ${t}`)
    if (JSON.stringify(q) !== JSON.stringify(want))
      throw new Error(`qlobber disagrees with the oracle on ${t}`)
    checked++
    matchedPairs += want.length
  }

  const rounds = n >= 100_000 ? 2 : 5
  const [oursCold, theirsCold] = rates(
    cold,
    rounds,
    (t) => a.match(t).length,
    (t) => b.match(t).size,
  )
  const [oursHot, theirsHot] = rates(
    hot,
    rounds * 20,
    (t) => a.match(t).length,
    (t) => b.match(t).size,
  )
  rows.push([
    fmt(n),
    `${checked} topics (${matchedPairs} matches) agree`,
    `${fmt(oursCold)}/s vs ${fmt(theirsCold)}/s = ${(oursCold / theirsCold).toFixed(2)}x`,
    `${fmt(oursHot)}/s vs ${fmt(theirsHot)}/s = ${(oursHot / theirsHot).toFixed(2)}x`,
    `${buildOurs.toFixed(0)} ms vs ${buildTheirs.toFixed(0)} ms`,
    `${(heapOurs / n).toFixed(0)} B vs ${(heapTheirs / n).toFixed(0)} B`,
  ])
}

console.log('MatcherIndex vs qlobber (QlobberDedup), same process, same patterns and topics')
const head = [
  'subs',
  'oracle check',
  'matches/s cold (ours vs qlobber)',
  'matches/s hot',
  'build',
  'heap/sub',
]
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)))
const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i] as number)).join(' | ')
console.log(line(head))
console.log(widths.map((w) => '-'.repeat(w)).join('-|-'))
for (const r of rows) console.log(line(r))
