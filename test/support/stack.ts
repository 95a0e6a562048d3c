import { loadConfig } from '../../src/config';
import { services } from '../../src/stack/cli';
import { topicsFor } from '../../src/streams/kafka';

// Tests need the real services: a missing one fails the suite loudly, it never skips.
export async function requireServices(...names: string[]): Promise<void> {
  const wanted = services.filter((s) => names.includes(s.name));
  const down: string[] = [];
  for (const s of wanted) if (!(await s.answers())) down.push(`${s.name} at ${s.address()}`);
  if (down.length > 0) {
    throw new Error(`required services are not answering: ${down.join(', ')}. Run \`npm run stack -- up\`.`);
  }
}

export const config = loadConfig();
/** The topics the pipeline under test uses (KAFKA_TOPIC_NAMESPACE of this environment). */
export const topics = topicsFor(config);

export function uniqueId(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;
}
