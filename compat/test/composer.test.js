// Compositions compiled by the npm `openwhisk-composer` package (conductor actions), deployed with
// its client and invoked through the npm `openwhisk` client against `brisk serve`.
'use strict'

const { describe, it, before } = require('node:test')
const assert = require('node:assert/strict')
const composer = require('openwhisk-composer')
const composerClient = require('openwhisk-composer/client')

const GUEST_KEY = '23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP'
const apihost = process.env.BRISK_APIHOST
assert.ok(apihost, 'BRISK_APIHOST must be set (use compat/run.sh)')

const wsk = composerClient({ apihost, api_key: GUEST_KEY }, true)
const suffix = Date.now().toString(36)
const n = (name) => `c_${name}_${suffix}`

// Deploys a composition under `name` and returns a function invoking it blocking for its result.
async function deploy (name, composition) {
  await wsk.compositions.deploy(Object.assign(composition.compile(), { name }), true)
  return (params) => wsk.actions.invoke({ name, params, blocking: true, result: true })
}

describe('openwhisk-composer compositions', () => {
  before(async () => {
    const actions = {
      inc: 'function main(p) { return { n: (p.n || 0) + 1 } }',
      dbl: 'function main(p) { return { n: p.n * 2 } }',
      isEven: 'function main(p) { return { value: p.n % 2 === 0 } }',
      fail: 'function main(p) { return { error: "failed at " + p.n } }',
      flaky: 'let calls = 0; function main(p) { calls++; return calls < 3 ? { error: "try again" } : { n: p.n, calls } }',
      small: 'function main(p) { return { value: p.n < 20 } }'
    }
    for (const [name, code] of Object.entries(actions)) {
      await wsk.actions.update({ name: n(name), action: { exec: { kind: 'nodejs:20', code } } })
    }
  })

  it('sequence', async () => {
    const run = await deploy(n('seq'), composer.sequence(n('inc'), n('dbl'), n('inc')))
    assert.deepEqual(await run({ n: 1 }), { n: 5 })
  })

  it('if / then / else', async () => {
    const run = await deploy(n('if'), composer.if(n('isEven'), n('dbl'), n('inc')))
    assert.deepEqual(await run({ n: 4 }), { n: 8 })
    assert.deepEqual(await run({ n: 5 }), { n: 6 })
  })

  it('while', async () => {
    const run = await deploy(n('while'), composer.while(n('small'), n('dbl')))
    assert.deepEqual(await run({ n: 3 }), { n: 24 })
  })

  it('try / catch and finally', async () => {
    const caught = await deploy(n('try'), composer.try(n('fail'), composer.function(e => ({ recovered: e.error }))))
    assert.deepEqual(await caught({ n: 7 }), { recovered: 'failed at 7' })
    const fin = await deploy(n('finally'), composer.finally(n('inc'), n('dbl')))
    assert.deepEqual(await fin({ n: 1 }), { n: 4 })
  })

  it('retry and repeat', async () => {
    const retried = await deploy(n('retry'), composer.retry(3, n('flaky')))
    assert.deepEqual(await retried({ n: 9 }), { n: 9, calls: 3 })
    const repeated = await deploy(n('repeat'), composer.repeat(3, n('inc')))
    assert.deepEqual(await repeated({ n: 0 }), { n: 3 })
  })

  it('let, mask and retain', async () => {
    const withLet = await deploy(n('let'), composer.let({ k: 10 }, composer.function(p => ({ n: p.n + k }))))
    assert.deepEqual(await withLet({ n: 1 }), { n: 11 })
    const retained = await deploy(n('retain'), composer.retain(n('dbl')))
    assert.deepEqual(await retained({ n: 3 }), { params: { n: 3 }, result: { n: 6 } })
    const masked = await deploy(n('mask'), composer.let({ n: 100 }, composer.mask(composer.function(p => ({ n: p.n + 1 })))))
    assert.deepEqual(await masked({ n: 1 }), { n: 2 })
  })

  it('records the composition with its steps', async () => {
    const name = n('seq')
    const activation = await wsk.actions.invoke({ name, params: { n: 1 }, blocking: true })
    assert.equal(activation.response.success, true)
    const conductor = activation.annotations.find(a => a.key === 'conductor')
    assert.ok(conductor && conductor.value, 'primary record is marked conductor')
    // conductor, inc, conductor, dbl, conductor, inc, conductor
    assert.equal(activation.logs.length, 7)
  })
})
