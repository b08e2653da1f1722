// tuf-js, an independent TUF 1.0 client, against a repository keyfleet published: refreshes the
// metadata from the trusted root in METADATA_DIR (where it keeps what it trusts between runs,
// as a device does), then downloads and verifies one target.
//
//   node tuf_client.mjs METADATA_DIR METADATA_URL TARGETS_URL TARGET OUT
//
// Prints "OK <target> <length> <custom>" and exits 0, or "REFUSED <error class> <message>" and
// exits 3. With TUF_CERT, TUF_KEY and TUF_CA set it fetches over mutual TLS with that client
// certificate, as a device does from keyfleetd (Node's https; the TLS trust is that CA only).
import fs from 'node:fs';
import https from 'node:https';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { BaseFetcher, Updater } from 'tuf-js';

const require = createRequire(import.meta.url);
const { DownloadHTTPError } = require('tuf-js/dist/error');

class MutualTlsFetcher extends BaseFetcher {
  constructor(cert, key, ca) {
    super();
    this.agent = new https.Agent({ cert, key, ca, keepAlive: true, minVersion: 'TLSv1.2' });
  }

  fetch(url) {
    return new Promise((resolve, reject) => {
      https
        .get(url, { agent: this.agent }, (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            reject(new DownloadHTTPError(`Failed to download ${url}`, res.statusCode));
            return;
          }
          resolve(Readable.toWeb(res));
        })
        .on('error', reject);
    });
  }
}

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
    fetcher: process.env.TUF_CERT
      ? new MutualTlsFetcher(
          fs.readFileSync(process.env.TUF_CERT),
          fs.readFileSync(process.env.TUF_KEY),
          fs.readFileSync(process.env.TUF_CA),
        )
      : undefined,
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
