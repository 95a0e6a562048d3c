import { join } from 'node:path';
import { ListBucketsCommand } from '@aws-sdk/client-s3';
import { loadConfig } from '../config';
import { createS3Client, ensureBucket } from '../stores/s3';
import {
  type LocalService,
  ensurePythonVenv,
  hostPort,
  serviceDir,
  spawnDetached,
  stopByPidFile,
  waitUntil,
} from './service';

// S3-compatible store: moto's server (pure Python from PyPI). docs/local-stack.md says why not MinIO.

export const s3Service: LocalService = {
  name: 's3',
  address: () => `${loadConfig().S3_ENDPOINT} (bucket ${loadConfig().S3_BUCKET})`,
  answers: async () => {
    const s3 = createS3Client(loadConfig());
    try {
      await s3.send(new ListBucketsCommand({}), { abortSignal: AbortSignal.timeout(2000) });
      return true;
    } catch {
      return false;
    } finally {
      s3.destroy();
    }
  },
  install: async () => {
    ensurePythonVenv();
  },
  start: async () => {
    const { host, port } = hostPort(loadConfig().S3_ENDPOINT, 9000);
    const venv = ensurePythonVenv();
    spawnDetached('s3', venv.bin('moto_server'), ['-H', host, '-p', String(port)]);
    await waitUntil('s3', () => s3Service.answers(), 60_000, join(serviceDir('s3'), 's3.log'));
  },
  stop: async () => {
    await stopByPidFile('s3');
  },
  provision: async () => {
    const config = loadConfig();
    const s3 = createS3Client(config);
    try {
      await ensureBucket(s3, config.S3_BUCKET);
    } finally {
      s3.destroy();
    }
  },
};
