import type { WorkerOptions } from '@temporalio/worker';

/** Where a worker gets its workflow code: a prebuilt bundle (production), or src/workflows bundled at start. */
export function workflowCode(
  bundle: WorkerOptions['workflowBundle'] | undefined,
): Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'> {
  return bundle ? { workflowBundle: bundle } : { workflowsPath: require.resolve('../workflows') };
}
