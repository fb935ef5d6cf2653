import type { SearchAttributeType } from '@temporalio/common';

/**
 * The custom search attributes the project's workflows set, so runs can be listed and filtered in the
 * Temporal UI (e.g. `DdpmPreset = "cifar10" AND DdpmStatus = "running"`). Every Temporal server the
 * project uses must have them registered: the dev server here does it at start; for a real cluster
 * see infra/README.md.
 */
export const DDPM_SEARCH_ATTRIBUTES = {
  DdpmPreset: 'KEYWORD',
  DdpmStep: 'INT',
  DdpmLoss: 'DOUBLE',
  DdpmStatus: 'KEYWORD',
  DdpmBitsPerDim: 'DOUBLE',
  DdpmClassifierFid: 'DOUBLE',
} as const satisfies Record<string, SearchAttributeType>;

export type SearchAttributeSpec = Readonly<Record<string, SearchAttributeType>>;

/** Spelling the Temporal CLI expects in `--search-attribute KEY=TYPE`. */
export const CLI_TYPE_NAMES: Record<SearchAttributeType, string> = {
  TEXT: 'Text',
  KEYWORD: 'Keyword',
  INT: 'Int',
  DOUBLE: 'Double',
  BOOL: 'Bool',
  DATETIME: 'Datetime',
  KEYWORD_LIST: 'KeywordList',
};

/** temporal.api.enums.v1.IndexedValueType numbers, as the operator service speaks them. */
export const INDEXED_VALUE_TYPES: Record<SearchAttributeType, number> = {
  TEXT: 1,
  KEYWORD: 2,
  INT: 3,
  DOUBLE: 4,
  BOOL: 5,
  DATETIME: 6,
  KEYWORD_LIST: 7,
};
