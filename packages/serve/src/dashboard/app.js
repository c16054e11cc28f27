// The Omnibus dashboard: plain browser JavaScript, no build step. It draws the server's snapshots
// (`api/live`, Server-Sent Events) and a live tail of events (`events/stream?pattern=…`). URLs are
// relative to the page, so the page also works where an application mounts the handler under a
// path prefix. `?intervalMs=N` in the page's address asks the server for a snapshot every N ms.
//
// Snapshots can arrive ten times a second and the page may stay open for days, so everything the
// page holds is bounded: tables reuse their rows by key and write a cell only when its text
// changes, the tail keeps its last TAIL_MAX lines, chart series keep WINDOW_S one-second points,
// drawing happens at most once per animation frame, and charts redraw at most once a second.
;(() => {
  const TAIL_MAX = 200
  const ERRORS_MAX = 50
  const ROWS_MAX = 200
  const WINDOW_S = 300
  const MAX_SERIES = 8
  const RENDER_MS = 250
  const PALETTE = ['#5aa9ff', '#3fb950', '#d29922', '#a371f7', '#f85149', '#39c5cf', '#ff7b72', '#e3b341']
  const OTHER = 'other'
  const OTHER_COLOR = '#8b95a5'

  // ---------------------------------------------------------------- formatting

  const intFormat = new Intl.NumberFormat('en-US')

  function count(n) {
    if (typeof n !== 'number' || !Number.isFinite(n)) return '–'
    const a = Math.abs(n)
    if (a < 10_000) return intFormat.format(Math.round(n))
    if (a < 1_000_000) return `${(n / 1000).toFixed(a < 100_000 ? 1 : 0)}k`
    if (a < 1_000_000_000) return `${(n / 1_000_000).toFixed(a < 100_000_000 ? 2 : 0)}M`
    return `${(n / 1_000_000_000).toFixed(2)}G`
  }

  function duration(v) {
    if (typeof v !== 'number' || !Number.isFinite(v)) return '–'
    if (v < 1) return `${v.toFixed(2)} ms`
    if (v < 10) return `${v.toFixed(1)} ms`
    if (v < 1000) return `${Math.round(v)} ms`
    if (v < 60_000) return `${(v / 1000).toFixed(v < 10_000 ? 2 : 1)} s`
    return `${(v / 60_000).toFixed(1)} min`
  }

  function usd(v) {
    if (typeof v !== 'number' || !Number.isFinite(v)) return '–'
    if (v === 0) return '$0.00'
    if (Math.abs(v) < 0.01) return `$${v.toPrecision(2)}`
    if (Math.abs(v) < 100) return `$${v.toFixed(v < 1 ? 3 : 2)}`
    return `$${intFormat.format(Math.round(v))}`
  }

  function ago(ms) {
    if (typeof ms !== 'number' || !Number.isFinite(ms)) return '–'
    const s = Math.max(0, Math.round(ms / 1000))
    if (s < 60) return `${s} s ago`
    if (s < 3600) return `${Math.floor(s / 60)} min ago`
    if (s < 86_400) return `${Math.floor(s / 3600)} h ago`
    return `${Math.floor(s / 86_400)} d ago`
  }

  function span(ms) {
    const s = Math.max(0, Math.floor(ms / 1000))
    if (s < 60) return `${s} s`
    if (s < 3600) return s % 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s / 60} min`
    if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
    return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`
  }

  function percent(x) {
    if (typeof x !== 'number' || !Number.isFinite(x)) return '–'
    if (x === 0) return '0%'
    if (x < 0.001) return '<0.1%'
    return `${(x * 100).toFixed(x < 0.1 ? 1 : 0)}%`
  }

  function two(n) {
    return n < 10 ? `0${n}` : String(n)
  }

  function clock(t, millis) {
    const d = new Date(t)
    const base = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`
    if (!millis) return base
    const m = d.getMilliseconds()
    return `${base}.${m < 10 ? '00' : m < 100 ? '0' : ''}${m}`
  }

  function preview(value, max) {
    let text
    try {
      text = typeof value === 'string' ? value : JSON.stringify(value)
    } catch {
      text = String(value)
    }
    if (text === undefined) return ''
    return text.length > max ? `${text.slice(0, max - 1)}…` : text
  }

  // ---------------------------------------------------------------- DOM helpers

  const $ = (id) => document.getElementById(id)

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text
  }

  function setClass(el, name, on) {
    if (el.classList.contains(name) !== on) el.classList.toggle(name, on)
  }

  function el(tag, className, text) {
    const e = document.createElement(tag)
    if (className) e.className = className
    if (text !== undefined) e.textContent = text
    return e
  }

  /**
   * A table body whose rows are kept by key: an update writes only the cells whose text changed,
   * moves rows only when the order changed, and removes rows whose key is gone.
   * Each column is { cls, text(item) } or { cls, init(td, key), update(td, item) }, plus an
   * optional flag(item) naming a class the cell gets when true.
   */
  class KeyedTable {
    constructor(tbody, columns, keyOf, empty) {
      this.tbody = tbody
      this.columns = columns
      this.keyOf = keyOf
      this.empty = empty
      this.rows = new Map()
    }

    update(items) {
      const seen = new Set()
      let prev = null
      const n = Math.min(items.length, ROWS_MAX)
      for (let i = 0; i < n; i++) {
        const item = items[i]
        const key = this.keyOf(item)
        if (seen.has(key)) continue
        seen.add(key)
        let tr = this.rows.get(key)
        if (tr === undefined) {
          tr = document.createElement('tr')
          tr.dataset.key = key
          for (const col of this.columns) {
            const td = el('td', col.cls)
            if (col.init) col.init(td, key)
            tr.appendChild(td)
          }
          this.rows.set(key, tr)
        }
        const cells = tr.children
        for (let c = 0; c < this.columns.length; c++) {
          const col = this.columns[c]
          const td = cells[c]
          if (col.update) col.update(td, item)
          else setText(td, col.text(item))
          if (col.flag) setClass(td, col.flag.name, col.flag.when(item))
        }
        const want = prev === null ? this.tbody.firstChild : prev.nextSibling
        if (want !== tr) this.tbody.insertBefore(tr, want)
        prev = tr
      }
      for (const [key, tr] of this.rows) {
        if (!seen.has(key)) {
          tr.remove()
          this.rows.delete(key)
        }
      }
      if (this.empty) this.empty.hidden = seen.size > 0
    }
  }

  // ---------------------------------------------------------------- charts

  const colors = new Map()
  function colorOf(key) {
    if (key === OTHER) return OTHER_COLOR
    let c = colors.get(key)
    if (c === undefined) {
      if (colors.size > 256) colors.clear()
      c = PALETTE[colors.size % PALETTE.length]
      colors.set(key, c)
    }
    return c
  }

  const axisStyle = {
    stroke: '#8b95a5',
    grid: { stroke: '#232932', width: 1 },
    ticks: { stroke: '#2a313b', width: 1, size: 4 },
    font: '11px system-ui, sans-serif',
  }

  /**
   * One uPlot chart whose series can change: rebuilt when the set of series changes, else setData.
   * The plot has a fixed height (the legend goes below it) and follows its container's width.
   */
  class LineChart {
    constructor(container, opts) {
      this.container = container
      this.opts = opts
      this.plot = null
      this.keys = []
      this.width = 0
      new ResizeObserver(() => {
        const width = this.container.clientWidth
        if (this.plot && width !== this.width) {
          this.width = width
          this.plot.setSize(this.size())
        }
      }).observe(container)
    }

    size() {
      return { width: Math.max(100, this.container.clientWidth), height: this.opts.height }
    }

    set(keys, data) {
      if (typeof uPlot !== 'function') return
      const same = keys.length === this.keys.length && keys.every((k, i) => k === this.keys[i])
      if (same && this.plot) {
        this.plot.setData(data)
        return
      }
      if (this.plot) this.plot.destroy()
      this.keys = keys.slice()
      const fmt = this.opts.format
      const series = [{}]
      for (const key of keys) {
        series.push({
          label: key,
          stroke: colorOf(key),
          width: 1.5,
          // Away from the cursor the legend shows the newest value (or the window's sum).
          value: (u, v, si, idx) => {
            let value = v
            if (idx == null) {
              const ys = u.data[si]
              if (this.opts.idle === 'sum') value = ys.reduce((a, y) => a + (y ?? 0), 0)
              else value = ys.length ? ys[ys.length - 1] : null
            }
            return value == null ? '–' : fmt(value)
          },
        })
      }
      this.plot = new uPlot(
        {
          ...this.size(),
          series,
          cursor: { points: { size: 5 }, drag: { x: false, y: false } },
          legend: { live: true },
          scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
          axes: [
            { ...axisStyle, space: 60 },
            { ...axisStyle, size: 56, values: (_u, ticks) => ticks.map((v) => fmt(v)) },
          ],
        },
        data,
        this.container,
      )
      this.width = this.container.clientWidth
    }
  }

  /**
   * Named series over a rolling window of one-second points. At most MAX_SERIES names get their
   * own line (the first ones seen); the rest are summed into "other".
   */
  class Rolling {
    constructor() {
      this.xs = []
      this.series = new Map()
    }

    /** Adds (or, within the same second, replaces) the point at second `sec`. */
    put(sec, values) {
      const last = this.xs.length - 1
      let i = last
      if (last < 0 || this.xs[last] !== sec) {
        this.xs.push(sec)
        for (const ys of this.series.values()) ys.push(null)
        i = last + 1
        if (this.xs.length > WINDOW_S) {
          this.xs.shift()
          for (const ys of this.series.values()) ys.shift()
          i--
        }
      }
      for (const ys of this.series.values()) ys[i] = 0
      for (const [name, v] of values) {
        let key = name
        if (!this.series.has(key)) {
          if (this.series.size >= MAX_SERIES) key = OTHER
          if (!this.series.has(key)) {
            this.series.set(key, new Array(this.xs.length).fill(null))
          }
        }
        const ys = this.series.get(key)
        ys[i] = (ys[i] ?? 0) + v
      }
      // A name that has been silent for the whole window gives its line back.
      for (const [key, ys] of this.series) {
        if (ys.every((y) => y === null || y === 0)) this.series.delete(key)
      }
    }

    view() {
      const keys = [...this.series.keys()].sort((a, b) => (a === OTHER) - (b === OTHER) || a.localeCompare(b))
      return { keys, data: [this.xs.slice(), ...keys.map((k) => this.series.get(k).slice())] }
    }
  }

  // ---------------------------------------------------------------- state

  let snapshot = null
  // Server time minus browser time: "3 s ago" is measured on the server's clock.
  let skew = 0
  let renderQueued = false
  let chartsDirty = false
  let group = 'model'
  let lastSampleSec = -1
  let lastCumulative = null
  const familyRates = new Rolling()
  const tokenRates = { model: new Rolling(), agent: new Rolling() }
  let costKey = ''
  const redriving = new Map()

  const rateChart = new LineChart($('chart-rate'), { height: 380, format: (v) => `${count(v)}/s` })
  const costChart = new LineChart($('chart-cost'), { height: 150, format: usd, idle: 'sum' })
  const tokenChart = new LineChart($('chart-tokens'), { height: 150, format: (v) => `${count(v)}/s` })

  // Snapshots may come faster than anyone reads: draw at most every RENDER_MS, on a frame.
  let lastRender = 0
  function queueRender() {
    if (renderQueued) return
    renderQueued = true
    const wait = Math.max(0, lastRender + RENDER_MS - performance.now())
    setTimeout(() => {
      requestAnimationFrame(() => {
        renderQueued = false
        lastRender = performance.now()
        render()
      })
    }, wait)
  }

  function onSnapshot(s) {
    if (s === null || typeof s !== 'object' || typeof s.at !== 'number') return
    snapshot = s
    skew = s.at - Date.now()
    sample(s)
    queueRender()
  }

  /** Records the chart points of `s`, once per second of server time. */
  function sample(s) {
    const sec = Math.floor(s.at / 1000)
    const families = (s.families ?? []).map((f) => [f.family, f.perSecond])
    const cumulative = {
      at: s.at,
      model: new Map((s.models ?? []).map((m) => [m.model, m.inputTokens + m.outputTokens])),
      agent: new Map((s.agents ?? []).map((a) => [a.agentId, a.inputTokens + a.outputTokens])),
    }
    if (sec === lastSampleSec) {
      familyRates.put(sec, families)
      return
    }
    familyRates.put(sec, families)
    if (lastCumulative !== null && s.at > lastCumulative.at) {
      const dt = (s.at - lastCumulative.at) / 1000
      for (const g of ['model', 'agent']) {
        const rates = []
        for (const [name, total] of cumulative[g]) {
          const before = lastCumulative[g].get(name) ?? 0
          // A counter that went down belongs to a restarted server: no rate for that second.
          if (total > before) rates.push([name, (total - before) / dt])
        }
        tokenRates[g].put(sec, rates)
      }
    }
    lastCumulative = cumulative
    lastSampleSec = sec
    chartsDirty = true
  }

  function serverNow() {
    return Date.now() + skew
  }

  // ---------------------------------------------------------------- tables

  const agentsTable = new KeyedTable(
    $('agents').tBodies[0],
    [
      { cls: 'name', text: (a) => a.agentId },
      {
        cls: 'num',
        text: (a) => ago(serverNow() - a.lastSeen),
        flag: { name: 'stale', when: (a) => serverNow() - a.lastSeen > 60_000 },
      },
      { cls: 'num', text: (a) => count(a.inFlight) },
      { cls: 'num', text: (a) => count(a.requests) },
      { cls: 'num', text: (a) => duration(a.p50Ms) },
      { cls: 'num', text: (a) => duration(a.p99Ms) },
      { cls: 'num', text: (a) => count(a.errors), flag: { name: 'bad', when: (a) => a.errors > 0 } },
      { cls: 'num', text: (a) => count(a.inputTokens + a.outputTokens) },
      { cls: 'num', text: (a) => usd(a.costUsd) },
    ],
    (a) => a.agentId,
    $('agents-empty'),
  )

  const toolsTable = new KeyedTable(
    $('tools').tBodies[0],
    [
      { cls: 'name', text: (t) => t.tool },
      { cls: 'num', text: (t) => count(t.calls) },
      { cls: 'num', text: (t) => duration(t.p50Ms) },
      { cls: 'num', text: (t) => duration(t.p95Ms) },
      { cls: 'num', text: (t) => count(t.errors), flag: { name: 'bad', when: (t) => t.errors > 0 } },
      { cls: 'num', text: (t) => percent(t.errorRate), flag: { name: 'bad', when: (t) => t.errorRate > 0 } },
    ],
    (t) => t.tool,
    $('tools-empty'),
  )

  const modelsTable = new KeyedTable(
    $('models').tBodies[0],
    [
      { cls: 'name', text: (m) => (m.provider ? `${m.model} · ${m.provider}` : m.model) },
      { cls: 'num', text: (m) => count(m.calls) },
      { cls: 'num', text: (m) => count(m.inputTokens) },
      { cls: 'num', text: (m) => count(m.outputTokens) },
      {
        cls: 'num',
        text: (m) => (m.priced === false ? 'no price' : usd(m.costUsd)),
        flag: { name: 'stale', when: (m) => m.priced === false },
      },
    ],
    (m) => m.model,
    $('models-empty'),
  )

  const deadLettersTable = new KeyedTable(
    $('deadletters').tBodies[0],
    [
      { cls: '', text: (d) => clock(d.time) },
      { cls: 'name', text: (d) => d.originalTopic },
      {
        cls: '',
        update: (td, d) => {
          setText(td, d.reason)
          if (td.title !== d.reason) td.title = d.reason
        },
      },
      { cls: 'num', text: (d) => (d.attempts === undefined ? '–' : count(d.attempts)) },
      {
        cls: 'act',
        init: (td, key) => {
          const button = el('button', 'redrive', 'Redrive')
          button.type = 'button'
          button.addEventListener('click', () => redrive(key))
          const badge = el('span', 'badge ok', 'redriven')
          badge.hidden = true
          td.append(button, badge)
        },
        update: (td, d) => {
          const local = redriving.get(d.id)
          const done = d.state === 'redriven' || local === 'done'
          const button = td.firstChild
          const badge = td.lastChild
          if (button.hidden !== done) button.hidden = done
          if (badge.hidden !== !done) badge.hidden = !done
          const busy = local === 'busy'
          if (button.disabled !== busy) button.disabled = busy
          setText(
            button,
            busy ? 'Redriving…' : typeof local === 'string' && local.startsWith('!') ? 'Retry' : 'Redrive',
          )
          const title = typeof local === 'string' && local.startsWith('!') ? local.slice(1) : ''
          if (button.title !== title) button.title = title
        },
      },
    ],
    (d) => d.id,
    $('deadletters-empty'),
  )

  async function redrive(id) {
    if (redriving.get(id) === 'busy') return
    redriving.set(id, 'busy')
    queueRender()
    try {
      const res = await fetch(`api/deadletters/${encodeURIComponent(id)}/redrive`, { method: 'POST' })
      if (!res.ok) {
        let message = `HTTP ${res.status}`
        try {
          const body = await res.json()
          if (body && typeof body.error === 'string') message = body.error
          else if (body && typeof body.message === 'string') message = body.message
        } catch {
          // The status says enough.
        }
        redriving.set(id, `!redrive failed: ${message}`)
      } else {
        redriving.set(id, 'done')
      }
    } catch (error) {
      redriving.set(id, `!redrive failed: ${error instanceof Error ? error.message : String(error)}`)
    }
    queueRender()
  }

  // The error feed: newest first, one reused <li> per error id.
  const errorItems = new Map()
  function renderErrors(errors) {
    const list = $('errors')
    const sorted = errors.slice().sort((a, b) => b.time - a.time)
    const seen = new Set()
    let prev = null
    for (const e of sorted.slice(0, ERRORS_MAX)) {
      seen.add(e.id)
      let li = errorItems.get(e.id)
      if (li === undefined) {
        li = el('li')
        const text = e.name ? `${e.name}: ${e.message}` : e.message
        li.append(el('span', 'time', clock(e.time)), el('span', 'topic', e.topic), el('span', 'msg', text))
        li.title = `${e.source}\n${text}`
        errorItems.set(e.id, li)
      }
      const want = prev === null ? list.firstChild : prev.nextSibling
      if (want !== li) list.insertBefore(li, want)
      prev = li
    }
    for (const [id, li] of errorItems) {
      if (!seen.has(id)) {
        li.remove()
        errorItems.delete(id)
      }
    }
    $('errors-empty').hidden = seen.size > 0
  }

  function renderAlerts(alerts) {
    const rank = { critical: 0, warning: 1, info: 2 }
    const firing = alerts
      .filter((a) => a.state === 'firing')
      .sort((a, b) => rank[a.severity] - rank[b.severity] || a.name.localeCompare(b.name))
    const box = $('alerts')
    box.hidden = firing.length === 0
    const list = $('alert-list')
    const signature = firing.map((a) => `${a.name}|${a.severity}|${a.message}|${a.since}`).join('\n')
    if (list.dataset.signature === signature) return
    list.dataset.signature = signature
    list.replaceChildren(
      ...firing.map((a) => {
        const li = el('li')
        const sev = el('span', 'sev', a.severity)
        sev.dataset.severity = a.severity
        li.append(
          sev,
          el('span', 'name', a.name),
          el('span', '', a.message),
          el('span', 'muted', `firing since ${clock(a.since)}`),
        )
        return li
      }),
    )
  }

  function costView() {
    const points = snapshot.cost ?? []
    const field = group === 'model' ? 'byModel' : 'byAgent'
    const totals = new Map()
    for (const p of points) {
      for (const [k, v] of Object.entries(p[field] ?? {})) totals.set(k, (totals.get(k) ?? 0) + v)
    }
    const ranked = [...totals].sort((a, b) => b[1] - a[1]).map(([k]) => k)
    const own = new Set(ranked.slice(0, MAX_SERIES))
    const keys = [...own].sort()
    if (ranked.length > MAX_SERIES) keys.push(OTHER)
    const xs = points.map((p) => Math.floor(p.t / 1000))
    const ys = keys.map(() => new Array(points.length).fill(0))
    points.forEach((p, i) => {
      for (const [k, v] of Object.entries(p[field] ?? {})) {
        const j = own.has(k) ? keys.indexOf(k) : keys.length - 1
        ys[j][i] += v
      }
    })
    return { keys, data: [xs, ...ys] }
  }

  function renderCharts(force) {
    const s = snapshot
    const points = s.cost ?? []
    const last = points[points.length - 1]
    const key = `${group}|${points.length}|${last ? `${last.t}|${last.totalUsd}` : ''}`
    if (force || key !== costKey) {
      costKey = key
      const c = costView()
      costChart.set(c.keys, c.data)
      const step = points.length > 1 ? points[1].t - points[0].t : undefined
      setText($('cost-sub'), step ? `Cost per ${span(step)} (USD)` : 'Cost (USD)')
    }
    if (force || chartsDirty) {
      chartsDirty = false
      const r = familyRates.view()
      rateChart.set(r.keys, r.data)
      const t = tokenRates[group].view()
      tokenChart.set(t.keys, t.data)
    }
  }

  function render(forceCharts) {
    const s = snapshot
    if (s === null) return
    const b = s.backend ?? {}
    const backend = $('backend')
    backend.dataset.healthy = String(b.healthy === true)
    setText($('backend-name'), b.name ?? 'unknown backend')
    let detail = b.healthy ? 'healthy' : 'unhealthy'
    if (typeof b.latencyMs === 'number') detail += ` · ${duration(b.latencyMs)}`
    if (!b.healthy && b.detail) detail += ` · ${b.detail}`
    setText($('backend-detail'), detail)
    setText($('uptime'), `up ${span(serverNow() - s.startedAt)}`)

    const t = s.totals ?? {}
    for (const node of document.querySelectorAll('[data-total]')) {
      const name = node.dataset.total
      let text
      if (name === 'costUsd') text = usd(t.costUsd)
      else if (name === 'tokens') text = `${count(t.inputTokens)} / ${count(t.outputTokens)}`
      else text = count(t[name])
      setText(node, text)
    }

    renderAlerts(s.alerts ?? [])

    const agents = (s.agents ?? []).slice().sort((a, b) => a.agentId.localeCompare(b.agentId))
    agentsTable.update(agents)
    setText($('agents-count'), agents.length ? String(agents.length) : '')

    const tools = (s.tools ?? []).slice().sort((a, b) => b.calls - a.calls || a.tool.localeCompare(b.tool))
    toolsTable.update(tools)
    setText($('tools-count'), tools.length ? String(tools.length) : '')

    const models = (s.models ?? []).slice().sort((a, b) => b.costUsd - a.costUsd || b.calls - a.calls)
    modelsTable.update(models)
    setText($('models-count'), models.length ? String(models.length) : '')

    renderErrors(s.errors ?? [])
    setText($('errors-count'), t.errors ? count(t.errors) : '')

    const letters = (s.deadLetters ?? []).slice().sort((a, b) => b.time - a.time)
    for (const id of redriving.keys()) if (!letters.some((d) => d.id === id)) redriving.delete(id)
    deadLettersTable.update(letters)
    const pending = letters.filter((d) => d.state !== 'redriven' && redriving.get(d.id) !== 'done').length
    setText($('dlq-count'), letters.length ? `${pending} pending of ${letters.length}` : '')

    renderCharts(forceCharts === true)
  }

  for (const button of document.querySelectorAll('[data-group]')) {
    button.addEventListener('click', () => {
      group = button.dataset.group
      for (const b of document.querySelectorAll('[data-group]')) {
        b.setAttribute('aria-pressed', String(b === button))
      }
      if (snapshot !== null) render(true)
    })
  }

  // ---------------------------------------------------------------- live snapshots

  let live = null
  let liveRetry = null
  const asked = new URLSearchParams(location.search).get('intervalMs')
  const liveUrl = asked === null ? 'api/live' : `api/live?intervalMs=${encodeURIComponent(asked)}`

  function setLive(state, text) {
    const node = $('live')
    node.dataset.state = state
    setText($('live-text'), text ?? state)
  }

  function connectLive() {
    if (live !== null) live.close()
    clearTimeout(liveRetry)
    const source = new EventSource(liveUrl)
    live = source
    source.onopen = () => setLive('live')
    source.onmessage = (e) => {
      try {
        onSnapshot(JSON.parse(e.data))
      } catch (error) {
        console.warn('dashboard: unreadable snapshot', error)
      }
    }
    source.onerror = () => {
      if (source !== live) return
      if (source.readyState === EventSource.CLOSED) {
        // The browser gives up on an HTTP error; try again later with a new stream.
        setLive('reconnecting', 'offline, retrying')
        source.close()
        liveRetry = setTimeout(connectLive, 3000)
      } else {
        setLive('reconnecting')
      }
    }
  }

  // ---------------------------------------------------------------- live tail

  const tail = $('tail')
  const tailInput = $('tail-pattern')
  const tailStatus = $('tail-status')
  const tailPause = $('tail-pause')
  let tailSource = null
  let tailPattern = ''
  let tailQueue = []
  let tailFlushQueued = false
  let paused = false
  let missed = 0
  let received = 0
  let dropped = 0

  // A cheap check of the topic grammar before asking the server, which has the last word.
  function patternProblem(p) {
    if (p === '') return 'enter a pattern'
    if (/\s/.test(p)) return 'a pattern has no spaces'
    if (p.split('.').some((s) => s === '')) return 'a pattern has no empty segment'
    return null
  }

  function tailStatusText() {
    const lost = dropped > 0 ? ` · ${count(dropped)} dropped by the server (page too slow)` : ''
    if (paused) return `paused · ${count(missed)} not shown${lost}`
    return `${count(received)} received${lost}`
  }

  function connectTail(pattern) {
    if (tailSource !== null) {
      tailSource.close()
      tailSource = null
    }
    tailPattern = pattern
    received = 0
    missed = 0
    dropped = 0
    tailQueue = []
    const problem = patternProblem(pattern)
    tailInput.setAttribute('aria-invalid', String(problem !== null))
    if (problem !== null) {
      setText(tailStatus, problem)
      return
    }
    const source = new EventSource(`events/stream?pattern=${encodeURIComponent(pattern)}`)
    tailSource = source
    setText(tailStatus, 'connecting…')
    source.onopen = () => {
      if (source === tailSource) setText(tailStatus, tailStatusText())
    }
    source.onmessage = (e) => {
      if (source !== tailSource) return
      received++
      if (paused) {
        missed++
        return
      }
      tailQueue.push(e.data)
      if (tailQueue.length > TAIL_MAX) tailQueue.shift()
      if (!tailFlushQueued) {
        tailFlushQueued = true
        setTimeout(() => requestAnimationFrame(flushTail), RENDER_MS)
      }
    }
    // The server tells how many events it could not send this client, and when a resumed stream
    // could not pick up where it left off.
    source.addEventListener('dropped', (e) => {
      if (source !== tailSource) return
      try {
        dropped += Number(JSON.parse(e.data).count) || 0
      } catch {
        return
      }
      setText(tailStatus, tailStatusText())
    })
    source.addEventListener('reset', () => {
      if (source === tailSource) setText(tailStatus, `${tailStatusText()} · resumed with a gap`)
    })
    source.onerror = () => {
      if (source !== tailSource) return
      if (source.readyState === EventSource.CLOSED) {
        setText(tailStatus, 'the server refused this pattern or the stream')
        tailInput.setAttribute('aria-invalid', 'true')
      } else {
        setText(tailStatus, 'reconnecting…')
      }
    }
  }

  function flushTail() {
    tailFlushQueued = false
    const atBottom = tail.scrollTop + tail.clientHeight >= tail.scrollHeight - 4
    const fragment = document.createDocumentFragment()
    for (const raw of tailQueue) {
      let event
      try {
        event = JSON.parse(raw)
      } catch {
        continue
      }
      const li = el('li')
      li.dataset.topic = String(event.topic)
      li.append(
        el('span', 'time', clock(typeof event.time === 'number' ? event.time : Date.parse(event.time), true)),
        el('span', 'topic', String(event.topic)),
        el('span', 'src', String(event.source ?? '')),
        el('span', 'data', preview(event.data, 400)),
      )
      fragment.appendChild(li)
    }
    tailQueue = []
    tail.appendChild(fragment)
    let extra = tail.childElementCount - TAIL_MAX
    while (extra-- > 0) tail.firstElementChild.remove()
    if (atBottom) tail.scrollTop = tail.scrollHeight
    setText(tailStatus, tailStatusText())
  }

  let tailTimer = null
  tailInput.addEventListener('input', () => {
    clearTimeout(tailTimer)
    tailTimer = setTimeout(() => {
      const p = tailInput.value.trim()
      if (p !== tailPattern) {
        tail.replaceChildren()
        connectTail(p)
      }
    }, 400)
  })
  $('tail-form').addEventListener('submit', (e) => {
    e.preventDefault()
    clearTimeout(tailTimer)
    tail.replaceChildren()
    connectTail(tailInput.value.trim())
  })
  tailPause.addEventListener('click', () => {
    paused = !paused
    if (!paused) missed = 0
    tailPause.setAttribute('aria-pressed', String(paused))
    setText(tailPause, paused ? 'Resume' : 'Pause')
    setText(tailStatus, tailStatusText())
  })
  $('tail-clear').addEventListener('click', () => {
    tail.replaceChildren()
  })

  // Closing the streams when the page goes away lets the server drop them at once.
  window.addEventListener('pagehide', () => {
    if (live !== null) live.close()
    if (tailSource !== null) tailSource.close()
  })

  setInterval(() => {
    // "3 s ago" moves even when no snapshot comes.
    if (snapshot !== null && document.visibilityState === 'visible') queueRender()
  }, 1000)

  fetch('api/snapshot')
    .then((res) => (res.ok ? res.json() : null))
    .then((s) => {
      if (s !== null && snapshot === null) onSnapshot(s)
    })
    .catch(() => {})
  connectLive()
  connectTail(tailInput.value.trim())
})()
