// Workflow bundle entry: everything the payment worker registers.
export { paymentWorkflow } from './payment';
export { slaSweepWorkflow } from './sla-sweep';
export { partnerPollWorkflow } from './partner-poll';
