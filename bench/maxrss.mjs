// Preloaded into benchmarked processes (node --import): writes the process's peak RSS in
// bytes to BENCH_RSS_FILE when it exits, however it exits.
import fs from 'node:fs';
import process from 'node:process';

process.on('exit', () => {
  const file = process.env.BENCH_RSS_FILE;
  // maxRSS is in kilobytes.
  if (file) fs.writeFileSync(file, String(process.resourceUsage().maxRSS * 1024));
});
