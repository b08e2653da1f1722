// tuf-js, an independent TUF 1.0 client, against a repository keyfleet published: refreshes the
// metadata from the trusted root in METADATA_DIR (where it keeps what it trusts between runs,
// as a device does), then downloads and verifies one target.
//
//   node tuf_client.mjs METADATA_DIR METADATA_URL TARGETS_URL TARGET OUT
//
// Prints "OK <target> <length> <custom>" and exits 0, or "REFUSED <error class> <message>" and
// exits 3.
import { Updater } from 'tuf-js';

const [metadataDir, metadataBaseUrl, targetBaseUrl, name, out] = process.argv.slice(2);
if (!out) {
  console.error('usage: node tuf_client.mjs METADATA_DIR METADATA_URL TARGETS_URL TARGET OUT');
  process.exit(2);
}
try {
  const updater = new Updater({
    metadataDir,
    metadataBaseUrl,
    targetBaseUrl,
    targetDir: metadataDir,
    config: { fetchRetries: 0 },
  });
  await updater.refresh();
  const info = await updater.getTargetInfo(name);
  if (!info) {
    console.log(`REFUSED UnknownTarget no target ${name}`);
    process.exit(3);
  }
  await updater.downloadTarget(info, out);
  console.log(`OK ${name} ${info.length} ${JSON.stringify(info.custom)}`);
} catch (e) {
  console.log(`REFUSED ${e.constructor.name} ${e.message}`);
  process.exit(3);
}
