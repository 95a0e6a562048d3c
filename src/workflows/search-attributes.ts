import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

// Custom search attributes ops filter payments by in the Web UI, e.g. PaymentStatus="STUCK".
export const PaymentStatusAttr = defineSearchAttributeKey('PaymentStatus', SearchAttributeType.KEYWORD);
export const MerchantIdAttr = defineSearchAttributeKey('MerchantId', SearchAttributeType.KEYWORD);
export const RegionAttr = defineSearchAttributeKey('Region', SearchAttributeType.KEYWORD);
// Backfills, e.g. BackfillStatus="PAUSED" or BackfillSources="webhooks,gateways".
export const BackfillStatusAttr = defineSearchAttributeKey('BackfillStatus', SearchAttributeType.KEYWORD);
export const BackfillSourcesAttr = defineSearchAttributeKey('BackfillSources', SearchAttributeType.KEYWORD);

/** What the stack registers on the namespace (all Keyword: exact-match filters). */
export const PAYMENT_SEARCH_ATTRIBUTES = {
  PaymentStatus: SearchAttributeType.KEYWORD,
  MerchantId: SearchAttributeType.KEYWORD,
  Region: SearchAttributeType.KEYWORD,
  BackfillStatus: SearchAttributeType.KEYWORD,
  BackfillSources: SearchAttributeType.KEYWORD,
} as const;
