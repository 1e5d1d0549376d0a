import t from 'tap'
import { compileCatalog, parseUpstream } from '../../../src/providers/catalog.ts'
import { matchRoute } from '../../../src/providers/routes.ts'

const BASES = { openai: ['/openai', '/api'], anthropic: ['/anthropic'] }

t.test('known API paths resolve to their provider, operation, API name and a path template without caller-chosen segments', async (t) => {
  const cases: [path: string, expected: ReturnType<typeof matchRoute>][] = [
    ['/v1/chat/completions', { kind: 'openai', operation: 'chat', api: 'openai.chat_completions', template: '/v1/chat/completions' }],
    ['/v1/completions', { kind: 'openai', operation: 'completion', api: 'openai.completions', template: '/v1/completions' }],
    ['/v1/responses', { kind: 'openai', operation: 'responses', api: 'openai.responses', template: '/v1/responses' }],
    ['/v1/embeddings', { kind: 'openai', operation: 'embedding', api: 'openai.embeddings', template: '/v1/embeddings' }],
    ['/v1/messages', { kind: 'anthropic', operation: 'messages', api: 'anthropic.messages', template: '/v1/messages' }],
    ['/v1/chat/completions?api-version=1&x=y', { kind: 'openai', operation: 'chat', api: 'openai.chat_completions', template: '/v1/chat/completions' }],
    ['/openai/v1/chat/completions', { kind: 'openai', operation: 'chat', api: 'openai.chat_completions', template: '/openai/v1/chat/completions' }],
    ['/api/v1/embeddings', { kind: 'openai', operation: 'embedding', api: 'openai.embeddings', template: '/api/v1/embeddings' }],
    ['/anthropic/v1/messages', { kind: 'anthropic', operation: 'messages', api: 'anthropic.messages', template: '/anthropic/v1/messages' }],
    [
      '/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21',
      { kind: 'azure-openai', operation: 'chat', api: 'azure_openai.chat_completions', deployment: 'gpt-4o-prod', template: '/openai/deployments/{deployment}/chat/completions' },
    ],
    ['/openai/deployments/davinci.v2/completions', { kind: 'azure-openai', operation: 'completion', api: 'azure_openai.completions', deployment: 'davinci.v2', template: '/openai/deployments/{deployment}/completions' }],
    ['/openai/deployments/embed_small/embeddings', { kind: 'azure-openai', operation: 'embedding', api: 'azure_openai.embeddings', deployment: 'embed_small', template: '/openai/deployments/{deployment}/embeddings' }],
  ]
  for (const [path, expected] of cases) t.same(matchRoute(path, BASES), expected, path)
})

t.test('everything else is not a route', async (t) => {
  const cases: [name: string, path: string][] = [
    ['the root', '/'],
    ['an empty path', ''],
    ['the model list', '/v1/models'],
    ['a trailing slash', '/v1/chat/completions/'],
    ['a suffix', '/v1/chat/completions/extra'],
    ['a different version', '/v2/chat/completions'],
    ['a dot-dot segment after the version', '/v1/x/../chat/completions'],
    ['a dot-dot segment at the end', '/v1/chat/completions/..'],
    ['an unconfigured base segment', '/a/v1/chat/completions'],
    ['two unconfigured base segments', '/a/b/v1/responses'],
    ['a token as a base segment', '/v1/ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2/v1/chat/completions'],
    ['a configured base followed by another segment', '/openai/x/v1/chat/completions'],
    ['a segment before a configured base', '/x/openai/v1/chat/completions'],
    ['a configured base as a prefix of a longer segment', '/openaix/v1/chat/completions'],
    ['an encoded configured base', '/%6Fpenai/v1/chat/completions'],
    ['an OpenAI API under an Anthropic base', '/anthropic/v1/chat/completions'],
    ['an Anthropic API under an OpenAI base', '/openai/v1/messages'],
    ['upper case', '/V1/CHAT/COMPLETIONS'],
    ['an encoded slash', '/v1/chat%2Fcompletions'],
    ['Anthropic under an unconfigured base path', '/claude/v1/messages'],
    ['Azure responses (not parsed for Azure)', '/openai/deployments/x/responses'],
    ['an Azure deployment with a slash', '/openai/deployments/a/b/chat/completions'],
    ['an Azure deployment name over 64 characters', `/openai/deployments/${'d'.repeat(65)}/chat/completions`],
    ['a fragment', '/v1/chat/completions#x'],
    ['a NUL byte', '/v1/chat/completions\u0000'],
    ['no leading slash', 'v1/chat/completions'],
    ['a full URL', 'http://api.openai.com/v1/chat/completions'],
  ]
  for (const [name, path] of cases) t.equal(matchRoute(path, BASES), undefined, name)
})

t.test('dot segments are not base paths, even before a configured one', async (t) => {
  t.equal(matchRoute('/x/../v1/chat/completions', BASES), undefined)
  t.equal(matchRoute('/../v1/embeddings', BASES), undefined)
  t.equal(matchRoute('/openai/../v1/embeddings', BASES), undefined)
  t.equal(matchRoute('/./openai/v1/embeddings', BASES), undefined)
})

t.test('without base paths only the API paths themselves are routes', async (t) => {
  t.equal(matchRoute('/openai/v1/chat/completions'), undefined)
  t.equal(matchRoute('/v1/chat/completions')?.template, '/v1/chat/completions')
})

t.test('the catalog gives each provider its own base paths, the kind defaults, and the root paths only to root providers', async (t) => {
  const catalog = compileCatalog({
    catalog: {
      openai: { kind: 'openai', upstream: 'https://api.openai.com' },
      groq: { kind: 'openai', upstream: 'https://api.groq.com/openai', root: false, basePaths: ['/groq'] },
      router: { kind: 'openai', upstream: 'https://openrouter.ai/api', root: false, basePaths: ['/api/v2'] },
      anthropic: { kind: 'anthropic', upstream: 'https://api.anthropic.com' },
      moonshot: { kind: 'anthropic', upstream: 'https://api.moonshot.ai/anthropic', root: false, basePaths: ['/anthropic'] },
    },
  })
  const m = (path: string, provider: string | undefined) => catalog.match(path, provider)
  t.equal(m('/api/v1/chat/completions', 'openai')?.route.template, '/api/v1/chat/completions', 'an openai provider defaults to /openai and /api')
  t.equal(m('/api/v1/chat/completions', 'groq'), undefined, 'a provider with its own list has only those')
  t.equal(m('/v1/chat/completions', 'groq'), undefined, '… and no root paths with root: false')
  t.equal(m('/groq/v1/chat/completions', 'groq')?.route.template, '/groq/v1/chat/completions')
  t.equal(m('/api/v2/v1/embeddings', 'router')?.route.template, '/api/v2/v1/embeddings', 'a base of two segments')
  t.equal(m('/anthropic/v1/messages', 'anthropic'), undefined, 'an anthropic provider defaults to none')
  t.equal(m('/anthropic/v1/messages', 'moonshot')?.route.kind, 'anthropic')
  t.equal(m('/anthropic/v1/messages', undefined)?.provider.name, 'moonshot', 'no provider named: the one that serves the path')
  t.equal(m('/api/v2/v1/embeddings', undefined)?.provider.name, 'router')
  t.equal(m('/v1/chat/completions', undefined)?.provider.name, 'openai')
  t.equal(m('/v1/messages', undefined)?.provider.name, 'anthropic')
  t.equal(m('/openai/v1/chat/completions', 'unknown'), undefined, 'an unknown provider name serves nothing')
  t.equal(m('/v1/chat/completions', 'unknown'), undefined, '… not even the API paths themselves')
  t.equal(m('/openai/deployments/x/chat/completions', undefined), undefined, 'no Azure provider: no Azure path')
})

t.test('upstream URLs give the scheme, host, port and the path the API is served under', async (t) => {
  t.same(parseUpstream('https://api.openai.com'), { tls: true, host: 'api.openai.com', port: 443, path: '' })
  t.same(parseUpstream('http://vllm.ml.svc:8000'), { tls: false, host: 'vllm.ml.svc', port: 8000, path: '' })
  t.same(parseUpstream('https://api.groq.com/openai'), { tls: true, host: 'api.groq.com', port: 443, path: '/openai' })
  t.same(parseUpstream('http://127.0.0.1'), { tls: false, host: '127.0.0.1', port: 80, path: '' })
})

t.test('a very long path is rejected without pathological matching', async (t) => {
  t.equal(matchRoute('/' + 'a/'.repeat(50_000) + 'v1/chat/completions', BASES), undefined)
  t.equal(matchRoute('/openai/deployments/' + 'x'.repeat(100_000)), undefined)
})
