// The npm `openwhisk` client against `brisk serve`: entities as users manage them.
// Started by ../run.sh, which exports BRISK_APIHOST (e.g. http://127.0.0.1:43210).
'use strict'

const { describe, it, before } = require('node:test')
const assert = require('node:assert/strict')
const openwhisk = require('openwhisk')

const GUEST_KEY = '23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP'
const SYSTEM_KEY = '789c46b1-71f6-4ed5-8c54-816aa4f8c502:abczO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP'
const apihost = process.env.BRISK_APIHOST
assert.ok(apihost, 'BRISK_APIHOST must be set (use compat/run.sh)')

const ow = openwhisk({ apihost, api_key: GUEST_KEY })
const system = openwhisk({ apihost, api_key: SYSTEM_KEY })

const CODE = 'function main(params) { return params }'
// Each run of the suite uses fresh names, so it also works against a reused server.
const suffix = Date.now().toString(36)
const n = (name) => `${name}-${suffix}`

const annotation = (entity, key) => (entity.annotations.find(a => a.key === key) || {}).value
const param = (entity, key) => (entity.parameters.find(p => p.key === key) || {}).value

async function rejects (promise, statusCode, message) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.statusCode, statusCode, `status of ${err.message}`)
    if (message !== undefined) {
      assert.equal(err.error.error, message)
      assert.ok(err.message.includes(message), err.message)
    }
    assert.equal(typeof err.error.code, 'string', 'envelope carries the request id')
    return true
  })
}

describe('namespaces', () => {
  it('lists the caller namespace', async () => {
    assert.deepEqual(await ow.namespaces.list(), ['guest'])
    assert.deepEqual(await system.namespaces.list(), ['whisk.system'])
  })
})

describe('actions', () => {
  const name = n('hello')

  it('creates an action from code', async () => {
    const a = await ow.actions.create({ name, action: CODE, params: { greeting: 'hi' }, annotations: { description: 'says hi' } })
    assert.equal(a.name, name)
    assert.equal(a.namespace, 'guest')
    assert.equal(a.version, '0.0.1')
    assert.equal(a.exec.kind, 'nodejs:20')
    assert.equal(a.exec.code, CODE)
    assert.equal(a.exec.binary, false)
    assert.deepEqual(a.limits, { timeout: 60000, memory: 256, logs: 10, concurrency: 1 })
    assert.equal(param(a, 'greeting'), 'hi')
    assert.equal(annotation(a, 'description'), 'says hi')
    assert.equal(annotation(a, 'exec'), 'nodejs:20')
    assert.equal(annotation(a, 'provide-api-key'), false)
  })

  it('refuses to create it twice', async () => {
    await rejects(ow.actions.create({ name, action: CODE }), 409, 'resource already exists')
  })

  it('gets it, with or without code', async () => {
    const a = await ow.actions.get({ name })
    assert.equal(a.exec.code, CODE)
    const same = await ow.actions.get(name)
    assert.deepEqual(same, a)
    const lean = await ow.actions.get({ name, code: false })
    assert.equal(lean.exec.code, undefined)
    assert.equal(lean.exec.kind, 'nodejs:20')
  })

  it('updates it and bumps the version', async () => {
    const a = await ow.actions.update({ name, action: 'function main() { return {v: 2} }', kind: 'nodejs:20', limits: { memory: 128 } })
    assert.equal(a.version, '0.0.2')
    assert.equal(a.limits.memory, 128)
    assert.equal(a.limits.timeout, 60000)
    assert.equal(a.exec.code, 'function main() { return {v: 2} }')
    assert.equal(annotation(a, 'description'), 'says hi', 'annotations are merged on update')
    const b = await ow.actions.update({ name, action: { parameters: [{ key: 'x', value: 1 }] } })
    assert.equal(b.version, '0.0.3')
    assert.deepEqual(b.parameters, [{ key: 'x', value: 1 }])
    assert.equal(b.exec.code, a.exec.code)
  })

  it('creates python, sequence and packaged actions', async () => {
    const py = await ow.actions.create({ name: n('py'), action: 'def main(a):\n    return a', kind: 'python:3.11' })
    assert.equal(py.exec.kind, 'python:3.11')
    const seq = await ow.actions.create({ name: n('seq'), sequence: [`/guest/${name}`, '/whisk.system/utils/echo'] })
    assert.equal(seq.exec.kind, 'sequence')
    assert.deepEqual(seq.exec.components, [`/guest/${name}`, '/whisk.system/utils/echo'])
    await ow.packages.create({ name: n('tools') })
    const inner = await ow.actions.create({ name: `${n('tools')}/inner`, action: CODE })
    assert.equal(inner.namespace, `guest/${n('tools')}`)
    assert.equal((await ow.actions.get(`${n('tools')}/inner`)).name, 'inner')
  })

  it('lists actions with limit, skip and count', async () => {
    const all = await ow.actions.list({ limit: 200 })
    const names = all.map(a => a.name)
    for (const x of [name, n('py'), n('seq'), 'inner']) assert.ok(names.includes(x), `${x} in ${names}`)
    const first = all.find(a => a.name === name)
    assert.equal(first.exec.code, undefined, 'lists carry no code')
    const two = await ow.actions.list({ limit: 2 })
    assert.equal(two.length, 2)
    const skipped = await ow.actions.list({ limit: 2, skip: 1 })
    assert.equal(skipped[0].name, two[1].name)
    const count = await ow.actions.list({ count: true })
    assert.equal(count.actions, all.length)
  })

  it('reads public catalogue actions', async () => {
    const echo = await ow.actions.get({ name: '/whisk.system/utils/echo' })
    assert.equal(echo.namespace, 'whisk.system/utils')
    assert.equal(echo.name, 'echo')
  })

  it('deletes actions', async () => {
    const gone = await ow.actions.delete({ name: n('py') })
    assert.equal(gone.name, n('py'))
    await ow.actions.delete([{ name: n('seq') }, { name: `${n('tools')}/inner` }])
    await rejects(ow.actions.get(n('py')), 404, 'The requested resource does not exist.')
  })

  it('reports errors the way OpenWhisk does', async () => {
    await rejects(ow.actions.get(n('missing')), 404, 'The requested resource does not exist.')
    await rejects(ow.actions.delete(n('missing')), 404, 'The requested resource does not exist.')
    await rejects(ow.actions.create({ name: n('bad'), action: CODE, kind: 'cobol:85' }), 400)
    await rejects(ow.actions.create({ name: n('big'), action: CODE, limits: { memory: 4096 } }), 400,
      'memory size 4096 MB exceeds allowed threshold of 512 MB')
    await rejects(ow.actions.create({ name: 'bad$name', action: CODE }), 400,
      'The name of the entity contains illegal characters.')
    await rejects(ow.actions.create({ name: n('seqbad'), sequence: [`/guest/${n('missing')}`] }), 400,
      'Sequence component does not exist.')
    await rejects(ow.actions.list({ limit: 500 }), 400, "The value '500' is not in the range of 0 to 200 for actions.")
    await rejects(system.actions.get({ name: `/guest/${name}` }), 403)
    const bad = openwhisk({ apihost, api_key: GUEST_KEY.replace(/.$/, 'x') })
    await rejects(bad.actions.list(), 401, 'The supplied authentication is invalid')
  })

  it('deletes the last one', async () => {
    await ow.actions.delete(name)
    await rejects(ow.actions.get(name), 404)
  })
})

describe('packages', () => {
  const pkg = n('pkg')
  const bound = n('bound')

  it('creates, gets and lists packages', async () => {
    const p = await ow.packages.create({ name: pkg, package: { parameters: [{ key: 'a', value: 1 }], publish: true } })
    assert.equal(p.name, pkg)
    assert.equal(p.publish, true)
    assert.deepEqual(p.binding, {})
    await ow.actions.create({ name: `${pkg}/act`, action: CODE })
    const got = await ow.packages.get(pkg)
    assert.deepEqual(got.actions.map(a => a.name), ['act'])
    assert.deepEqual(got.feeds, [])
    const list = await ow.packages.list()
    assert.ok(list.some(x => x.name === pkg && x.binding === false), JSON.stringify(list))
    assert.ok((await ow.packages.list({ count: true })).packages >= 1)
  })

  it('binds packages and merges parameters', async () => {
    const b = await ow.packages.create({
      name: bound,
      package: { binding: { namespace: 'guest', name: pkg }, parameters: [{ key: 'b', value: 2 }] }
    })
    assert.deepEqual(b.binding, { namespace: 'guest', name: pkg })
    const got = await ow.packages.get({ name: bound })
    assert.equal(param(got, 'a'), 1)
    assert.equal(param(got, 'b'), 2)
    assert.deepEqual(got.actions.map(a => a.name), ['act'])
    const act = await ow.actions.get(`${bound}/act`)
    assert.equal(param(act, 'a'), 1)
    assert.equal(param(act, 'b'), 2)
    const utils = await ow.packages.create({ name: n('myutils'), package: { binding: { namespace: 'whisk.system', name: 'utils' } } })
    assert.equal(utils.binding.name, 'utils')
  })

  it('updates packages', async () => {
    const p = await ow.packages.update({ name: pkg, package: { parameters: [{ key: 'c', value: 3 }] } })
    assert.equal(p.version, '0.0.2')
    assert.deepEqual(p.parameters, [{ key: 'c', value: 3 }])
  })

  it('lets other namespaces read published packages', async () => {
    const p = await system.packages.get({ name: `/guest/${pkg}` })
    assert.equal(p.name, pkg)
    const catalog = await ow.packages.get('/whisk.system/utils')
    assert.ok(catalog.actions.some(a => a.name === 'sort'))
    const listed = await ow.packages.list({ namespace: 'whisk.system' })
    assert.ok(listed.some(x => x.name === 'samples'))
  })

  it('reports package errors', async () => {
    await rejects(ow.packages.get(n('nopkg')), 404, 'The requested resource does not exist.')
    await rejects(ow.packages.create({ name: n('b2'), package: { binding: { namespace: 'guest', name: n('nopkg') } } }), 400,
      'Binding references a package that does not exist.')
    await rejects(ow.packages.create({ name: pkg }), 409, 'resource already exists')
    await rejects(ow.packages.delete(pkg), 409,
      'Package not empty (contains 1 entities). Set force param or delete package contents.')
  })

  it('deletes packages', async () => {
    await ow.packages.delete(bound)
    await ow.packages.delete(n('myutils'))
    await ow.actions.delete(`${pkg}/act`)
    const gone = await ow.packages.delete({ name: pkg })
    assert.equal(gone.name, pkg)
    await rejects(ow.packages.get(pkg), 404)
  })
})

describe('triggers and rules', () => {
  const trig = n('trig')
  const trig2 = n('trig2')
  const rule = n('rule')
  const action = n('ruled')

  before(async () => {
    await ow.actions.create({ name: action, action: CODE })
  })

  it('creates, gets, updates and lists triggers', async () => {
    const t = await ow.triggers.create({ name: trig, trigger: { parameters: [{ key: 'p', value: 1 }] } })
    assert.equal(t.name, trig)
    assert.equal(t.version, '0.0.1')
    assert.deepEqual(t.parameters, [{ key: 'p', value: 1 }])
    await ow.triggers.create({ name: trig2, annotations: { feed: '/whisk.system/alarms/alarm' } })
    const u = await ow.triggers.update({ name: trig, trigger: { parameters: [{ key: 'p', value: 2 }] } })
    assert.equal(u.version, '0.0.2')
    assert.equal(param(u, 'p'), 2)
    assert.equal((await ow.triggers.get(trig)).version, '0.0.2')
    const list = await ow.triggers.list()
    assert.ok(list.some(x => x.name === trig2))
    assert.ok((await ow.triggers.list({ count: true })).triggers >= 2)
    await rejects(ow.triggers.create({ name: trig }), 409, 'resource already exists')
  })

  it('creates a rule, active by default', async () => {
    const r = await ow.rules.create({ name: rule, trigger: trig, action })
    assert.equal(r.name, rule)
    assert.equal(r.status, 'active')
    assert.deepEqual(r.trigger, { path: 'guest', name: trig })
    assert.deepEqual(r.action, { path: 'guest', name: action })
    const t = await ow.triggers.get(trig)
    assert.equal(t.rules[`guest/${rule}`].status, 'active')
  })

  it('disables and enables the rule', async () => {
    await ow.rules.disable({ name: rule })
    assert.equal((await ow.rules.get(rule)).status, 'inactive')
    await ow.rules.enable({ name: rule })
    assert.equal((await ow.rules.get({ name: rule })).status, 'active')
  })

  it('moves the rule to another trigger', async () => {
    const r = await ow.rules.update({ name: rule, trigger: trig2, action })
    assert.deepEqual(r.trigger, { path: 'guest', name: trig2 })
    assert.equal(r.version, '0.0.2')
    assert.equal((await ow.triggers.get(trig)).rules, undefined)
    assert.ok((await ow.triggers.get(trig2)).rules[`guest/${rule}`])
  })

  it('lists rules', async () => {
    const list = await ow.rules.list()
    assert.ok(list.some(x => x.name === rule))
    assert.ok((await ow.rules.list({ count: true })).rules >= 1)
  })

  it('reports rule errors', async () => {
    await rejects(ow.rules.get(n('norule')), 404, 'The requested resource does not exist.')
    await rejects(ow.rules.create({ name: n('r2'), trigger: n('notrig'), action }), 400,
      `trigger /guest/${n('notrig')} does not exist`)
    await rejects(ow.rules.create({ name: n('r2'), trigger: trig, action: n('noaction') }), 400,
      `action /guest/${n('noaction')} does not exist`)
    await rejects(ow.triggers.create({ name: action }), 409,
      'Resource by this name exists but is not in this collection.')
  })

  it('deletes rules and triggers', async () => {
    const r = await ow.rules.delete(rule)
    assert.equal(r.status, 'inactive')
    await rejects(ow.rules.get(rule), 404)
    const t = await ow.triggers.delete({ name: trig })
    assert.equal(t.name, trig)
    await ow.triggers.delete(trig2)
    await ow.actions.delete(action)
    await rejects(ow.triggers.get(trig), 404, 'The requested resource does not exist.')
  })
})
