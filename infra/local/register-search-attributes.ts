import type { Connection } from '@temporalio/client';
import { DDPM_SEARCH_ATTRIBUTES, INDEXED_VALUE_TYPES, type SearchAttributeSpec } from './search-attributes';

/**
 * Adds the custom search attributes a namespace lacks (start-dev registers its --search-attribute flags
 * only when it creates the namespace, so an older db file may miss some) and refuses a type clash.
 */
export async function registerSearchAttributes(
  connection: Connection,
  namespace: string,
  spec: SearchAttributeSpec = DDPM_SEARCH_ATTRIBUTES,
): Promise<void> {
  const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
  const existing = customAttributes ?? {};
  const missing: Record<string, number> = {};
  for (const [name, type] of Object.entries(spec)) {
    const have = existing[name];
    if (have === undefined || have === null) missing[name] = INDEXED_VALUE_TYPES[type];
    else if (have !== INDEXED_VALUE_TYPES[type]) {
      throw new Error(
        `search attribute ${name} exists in namespace ${namespace} with a type other than ${type}`,
      );
    }
  }
  if (Object.keys(missing).length > 0) {
    await connection.operatorService.addSearchAttributes({ namespace, searchAttributes: missing });
  }
}
