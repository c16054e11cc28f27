// Minimal typings for the parts of qlobber the matcher benchmark uses (the package ships none).
declare module 'qlobber' {
  interface QlobberOptions {
    separator?: string
    wildcard_one?: string
    wildcard_some?: string
  }
  export class QlobberDedup<V = unknown> {
    constructor(options?: QlobberOptions)
    add(topic: string, value: V): this
    match(topic: string): Set<V>
  }
  const qlobber: { QlobberDedup: typeof QlobberDedup }
  export default qlobber
}
