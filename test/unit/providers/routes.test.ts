import t from 'tap'
import { matchRoute } from '../../../src/providers/routes.ts'

t.test('known API paths resolve to their provider, operation, API name and a path template without caller-chosen segments', async (t) => {
  const cases: [path: string, expected: ReturnType<typeof matchRoute>][] = [
    ['/v1/chat/completions', { kind: 'openai', operation: 'chat', api: 'openai.chat_completions', template: '/v1/chat/completions' }],
    ['/v1/completions', { kind: 'openai', operation: 'completion', api: 'openai.completions', template: '/v1/completions' }],
    ['/v1/responses', { kind: 'openai', operation: 'responses', api: 'openai.responses', template: '/v1/responses' }],
    ['/v1/embeddings', { kind: 'openai', operation: 'embedding', api: 'openai.embeddings', template: '/v1/embeddings' }],
    ['/v1/messages', { kind: 'anthropic', operation: 'messages', api: 'anthropic.messages', template: '/v1/messages' }],
    ['/v1/chat/completions?api-version=1&x=y', { kind: 'openai', operation: 'chat', api: 'openai.chat_completions', template: '/v1/chat/completions' }],
    ['/openai/v1/chat/completions', { kind: 'openai', operation: 'chat', api: 'openai.chat_completions', template: '/{base}/v1/chat/completions' }],
    ['/api/v1/embeddings', { kind: 'openai', operation: 'embedding', api: 'openai.embeddings', template: '/{base}/v1/embeddings' }],
    ['/a/b/v1/responses', { kind: 'openai', operation: 'responses', api: 'openai.responses', template: '/{base}/v1/responses' }],
    [
      '/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21',
      { kind: 'azure-openai', operation: 'chat', api: 'azure_openai.chat_completions', deployment: 'gpt-4o-prod', template: '/openai/deployments/{deployment}/chat/completions' },
    ],
    ['/openai/deployments/davinci.v2/completions', { kind: 'azure-openai', operation: 'completion', api: 'azure_openai.completions', deployment: 'davinci.v2', template: '/openai/deployments/{deployment}/completions' }],
    ['/openai/deployments/embed_small/embeddings', { kind: 'azure-openai', operation: 'embedding', api: 'azure_openai.embeddings', deployment: 'embed_small', template: '/openai/deployments/{deployment}/embeddings' }],
  ]
  for (const [path, expected] of cases) t.same(matchRoute(path), expected, path)
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
    ['more than two base segments', '/a/b/c/v1/chat/completions'],
    ['upper case', '/V1/CHAT/COMPLETIONS'],
    ['an encoded slash', '/v1/chat%2Fcompletions'],
    ['Anthropic under a base path', '/anthropic/v1/messages'],
    ['Azure responses (not parsed for Azure)', '/openai/deployments/x/responses'],
    ['an Azure deployment with a slash', '/openai/deployments/a/b/chat/completions'],
    ['an Azure deployment name over 64 characters', `/openai/deployments/${'d'.repeat(65)}/chat/completions`],
    ['a fragment', '/v1/chat/completions#x'],
    ['a NUL byte', '/v1/chat/completions\u0000'],
    ['no leading slash', 'v1/chat/completions'],
    ['a full URL', 'http://api.openai.com/v1/chat/completions'],
  ]
  for (const [name, path] of cases) t.equal(matchRoute(path), undefined, name)
})

t.test('dot segments in the base path still name the API the upstream will see after normalisation', async (t) => {
  // Only base segments can be consumed by normalisation; the /v1/<api> suffix is fixed, so both sides agree.
  t.same(matchRoute('/x/../v1/chat/completions'), { kind: 'openai', operation: 'chat', api: 'openai.chat_completions', template: '/{base}/v1/chat/completions' })
  t.same(matchRoute('/../v1/embeddings'), { kind: 'openai', operation: 'embedding', api: 'openai.embeddings', template: '/{base}/v1/embeddings' })
})

t.test('a very long path is rejected without pathological matching', async (t) => {
  t.equal(matchRoute('/' + 'a/'.repeat(50_000) + 'v1/chat/completions'), undefined)
  t.equal(matchRoute('/openai/deployments/' + 'x'.repeat(100_000)), undefined)
})
