import { z } from 'zod';
import type { Operation, ResponseDoc } from './api.js';
import { paramsOf, queryOf } from './api.js';
import { errorSchema } from './schemas.js';

type Json = Record<string, unknown>;

const COMPONENTS = '#/components/schemas/';

/**
 * The OpenAPI 3.1 document of the given operations, generated from the zod schemas that
 * validate their parameters and describe their answers. Schemas with an id (User, Run, ...)
 * become components.
 */
export function openApiDocument(ops: Operation[], info: { version: string }): Json {
  const components: Record<string, Json> = {};
  const toSchema = (schema: z.ZodType, io: 'input' | 'output'): Json => jsonSchema(schema, io, components);

  const paths: Record<string, Record<string, Json>> = {};
  for (const op of ops) {
    const path = op.path.replace(/:(\w+)/g, '{$1}');
    const parameters = [...parameterDocs(paramsOf(op), 'path', toSchema), ...parameterDocs(queryOf(op), 'query', toSchema)];
    const responses: Record<string, Json> = {};
    for (const [status, doc] of Object.entries(op.responses)) responses[status] = responseDoc(doc, toSchema);
    responses.default = responseDoc({ description: 'An error (see "Errors" in docs/api.md)', json: errorSchema }, toSchema);
    (paths[path] ??= {})[op.method] = {
      operationId: op.operationId,
      tags: [op.tag],
      summary: op.summary,
      ...(op.description ? { description: op.description } : {}),
      ...(op.access === 'public' ? { security: [] } : op.access === 'events' ? { security: [{ bearer: [] }, { eventsBearer: [] }, { eventsBasic: [] }] } : op.access === 'metrics' ? { security: [{ bearer: [] }, { metricsBearer: [] }] } : {}),
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(op.body
        ? { requestBody: { required: true, description: op.body.description, content: { 'application/json': { schema: toSchema(op.body.schema, 'input') } } } }
        : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'userjoin',
      version: info.version,
      description:
        'Joins user CSVs and photos from object storage into PostgreSQL and output.csv. With API_TOKEN set, every operation ' +
        'but the public ones needs "Authorization: Bearer <token>"; without it, the service answers only on loopback.',
    },
    security: [{ bearer: [] }],
    paths,
    components: {
      schemas: Object.fromEntries(Object.entries(components).sort(([a], [b]) => a.localeCompare(b))),
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'The API_TOKEN the service was started with' },
        eventsBearer: { type: 'http', scheme: 'bearer', description: 'The EVENTS_TOKEN, which opens only the event webhook' },
        metricsBearer: { type: 'http', scheme: 'bearer', description: 'The METRICS_TOKEN, which opens only GET /metrics' },
        eventsBasic: {
          type: 'http',
          scheme: 'basic',
          description:
            'The event webhook only: any user name, with EVENTS_TOKEN or API_TOKEN as the password, for senders that cannot send a ' +
            'Bearer token (Ceph radosgw, from user:password@ in its push endpoint; Amazon SNS likewise)',
        },
      },
    },
  };
}

function parameterDocs(schema: z.ZodType, where: 'path' | 'query', toSchema: (s: z.ZodType, io: 'input' | 'output') => Json): Json[] {
  if (!(schema instanceof z.ZodObject)) throw new Error(`${where} parameters must be an object schema`);
  return Object.entries(schema.shape as Record<string, z.ZodType>).map(([name, field]) => {
    const { description, ...rest } = toSchema(field, 'output');
    return {
      name,
      in: where,
      // A field that accepts no value is optional (or has a default).
      required: where === 'path' || !field.safeParse(undefined).success,
      ...(typeof description === 'string' ? { description } : {}),
      schema: rest,
    };
  });
}

function responseDoc(doc: ResponseDoc, toSchema: (s: z.ZodType, io: 'input' | 'output') => Json): Json {
  const content: Record<string, Json> = {};
  if (doc.json) content['application/json'] = { schema: toSchema(doc.json, 'output') };
  for (const [type, schema] of Object.entries(doc.media ?? {})) content[type] = { schema };
  return {
    description: doc.description,
    ...(doc.headers ? { headers: doc.headers } : {}),
    ...(Object.keys(content).length > 0 ? { content } : {}),
  };
}

/**
 * A zod schema as JSON Schema 2020-12 (OpenAPI 3.1's dialect). Named schemas, nested or not,
 * are moved to components and referred to.
 */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output', components: Record<string, Json>): Json {
  const generated = z.toJSONSchema(schema, { io, target: 'draft-2020-12', unrepresentable: 'throw' }) as Json;
  const defs = (generated.$defs ?? {}) as Record<string, Json>;
  delete generated.$defs;
  delete generated.$schema;
  for (const [id, def] of Object.entries(defs)) {
    const fixed = refsToComponents(def) as Json;
    const known = components[id];
    if (known && JSON.stringify(known) !== JSON.stringify(fixed)) throw new Error(`two different schemas are named ${id}`);
    components[id] = fixed;
  }
  // A named schema at the root comes out as a $ref to its $defs entry already.
  return refsToComponents(generated) as Json;
}

function refsToComponents(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(refsToComponents);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [k, k === '$ref' && typeof v === 'string' ? v.replace(/^#\/\$defs\//, COMPONENTS) : refsToComponents(v)]),
  );
}
