import t from 'tap'
import { compileRouteTable, matchRoute } from '../../../src/providers/routes.ts'

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

t.test('a route table gives each provider route its own base paths, the kind defaults, and every route\'s when the route names none', async (t) => {
  const table = compileRouteTable({
    routes: {
      openai: { kind: 'openai' },
      groq: { kind: 'openai', basePaths: ['/openai'] },
      router: { kind: 'openai', basePaths: ['/api/v2'] },
      anthropic: { kind: 'anthropic' },
      moonshot: { kind: 'anthropic', basePaths: ['/anthropic'] },
    },
  })
  t.equal(table.match('/api/v1/chat/completions', 'openai')?.template, '/api/v1/chat/completions', 'an openai route defaults to /openai and /api')
  t.equal(table.match('/api/v1/chat/completions', 'groq'), undefined, 'a route with its own list has only those')
  t.equal(table.match('/api/v2/v1/embeddings', 'router')?.template, '/api/v2/v1/embeddings', 'a base of two segments')
  t.equal(table.match('/anthropic/v1/messages', 'anthropic'), undefined, 'an anthropic route defaults to none')
  t.equal(table.match('/anthropic/v1/messages', 'moonshot')?.kind, 'anthropic')
  t.equal(table.match('/anthropic/v1/messages', undefined)?.kind, 'anthropic', 'no route named: every configured base of the family')
  t.equal(table.match('/api/v2/v1/embeddings', undefined)?.kind, 'openai')
  t.equal(table.match('/openai/v1/chat/completions', 'unknown'), undefined, 'an unconfigured route name gets no base paths')
  t.equal(table.match('/v1/chat/completions', 'unknown')?.api, 'openai.chat_completions', '… and still the API paths themselves')
})

t.test('a very long path is rejected without pathological matching', async (t) => {
  t.equal(matchRoute('/' + 'a/'.repeat(50_000) + 'v1/chat/completions', BASES), undefined)
  t.equal(matchRoute('/openai/deployments/' + 'x'.repeat(100_000)), undefined)
})
