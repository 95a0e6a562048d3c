// Workflow bundle entry, shared by the payment worker and the ingest worker (and the replay test).
export { paymentWorkflow } from './payment';
export { slaSweepWorkflow } from './sla-sweep';
export { partnerPollWorkflow } from './partner-poll';
export { backfillWorkflow } from './backfill';
export { financeLoadWorkflow } from './finance-load';
export { dataQualityWorkflow } from './data-quality';
export { reconciliationWorkflow } from './reconciliation';
