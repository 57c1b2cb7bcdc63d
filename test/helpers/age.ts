/** A key pair made by Debian's `age-keygen`: the identity file it wrote and its recipient. */
import { execFileSync } from 'node:child_process';
import path from 'node:path';

export function ageKey(dir: string, name: string): { file: string; recipient: string } {
  const file = path.join(dir, name);
  execFileSync('age-keygen', ['-o', file], { stdio: 'ignore' });
  return { file, recipient: execFileSync('age-keygen', ['-y', file], { encoding: 'utf8' }).trim() };
}
