import { Ajv, type ErrorObject, type Schema, type ValidateFunction } from 'ajv'
import type { FastifySchemaCompiler } from 'fastify'
import { ApiError, badField, type FieldLocation } from './errors.js'

// JSON-schema validation for the admin API. Bodies are checked strictly (no type coercion, unknown
// fields refused, so a typo is a 400 rather than silently ignored); query strings and path
// parameters are strings on the wire, so there numbers are coerced. The first problem found is
// reported as 400 `{ error: 'INVALID_ARGUMENT', message, field, in }`.

const strict = new Ajv({ coerceTypes: false, useDefaults: true, removeAdditional: false, allErrors: false, strict: true, allowUnionTypes: true })
const coercing = new Ajv({ coerceTypes: true, useDefaults: true, removeAdditional: false, allErrors: false, strict: true, allowUnionTypes: true })

/** fastify validator compiler: strict for bodies, coercing for query string, params and headers. */
export const validatorCompiler: FastifySchemaCompiler<Schema> = ({ schema, httpPart }) => (httpPart === 'body' ? strict : coercing).compile(schema)

function where(dataVar: string): FieldLocation {
  return dataVar === 'body' || dataVar === 'frame' ? dataVar : dataVar === 'params' ? 'path' : 'query'
}

/** `/records/0/value` -> `records[0].value` */
export function fieldPath(instancePath: string, child?: string): string {
  const parts = instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
  if (child !== undefined) parts.push(child)
  return parts.reduce((out, p) => (/^\d+$/.test(p) ? `${out}[${p}]` : out === '' ? p : `${out}.${p}`), '')
}

/** Turns the first ajv error into an ApiError naming the field. */
export function validationError(errors: Array<Pick<ErrorObject, 'keyword' | 'instancePath' | 'params' | 'message'>>, dataVar: string): ApiError {
  const e = errors[0]
  if (!e) return new ApiError(400, 'INVALID_ARGUMENT', `invalid ${dataVar}`)
  const params = e.params as Record<string, unknown>
  switch (e.keyword) {
    case 'required':
      return badField(where(dataVar), fieldPath(e.instancePath, String(params.missingProperty)), 'is required')
    case 'additionalProperties':
      return badField(where(dataVar), fieldPath(e.instancePath, String(params.additionalProperty)), 'is not allowed here')
    case 'enum':
      return badField(where(dataVar), fieldPath(e.instancePath), `must be one of: ${(params.allowedValues as unknown[]).join(', ')}`)
    default:
      return badField(where(dataVar), fieldPath(e.instancePath), e.message ?? 'is invalid')
  }
}

/** fastify `schemaErrorFormatter`. */
export function schemaErrorFormatter(errors: Array<Pick<ErrorObject, 'keyword' | 'instancePath' | 'params' | 'message'>>, dataVar: string): Error {
  return validationError(errors, dataVar)
}

/** A strict validator for JSON that does not come through fastify (WebSocket frames). */
// T is the shape the schema guarantees: the caller names it once, here
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
export function compileStrict<T>(schema: Schema): (data: unknown, what: string) => T {
  const validate: ValidateFunction = strict.compile(schema)
  return (data, what) => {
    if (!validate(data)) throw validationError(validate.errors ?? [], what)
    return data as T
  }
}
