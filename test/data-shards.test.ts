/** The prepared dataset's shards and manifest: a round trip, and manifests of the wrong shape refused. */
import { DatasetError, joinShards, parseShardManifest, splitIntoShards } from '../core/data';

const ds = {
  source: 'mem',
  count: 5,
  height: 2,
  width: 2,
  channels: 3,
  pixels: Uint8Array.from({ length: 5 * 12 }, (_, i) => i),
};

test('shards and manifest round-trip the pixels exactly', async () => {
  const { manifest, shards } = splitIntoShards(ds, 2);
  const parsed = parseShardManifest(Buffer.from(JSON.stringify(manifest)), 'm');
  const back = await joinShards(parsed, async (name) => shards.get(name)!, 'store');
  expect(back.pixels).toEqual(ds.pixels);
  expect(parsed.shards.map((s) => s.count)).toEqual([2, 2, 1]);
});

test('well-formed JSON of the wrong shape is a DatasetError naming the field, not a TypeError', () => {
  const { manifest } = splitIntoShards(ds, 2);
  const bad: [unknown, RegExp][] = [
    [null, /^m: not a ddpm-image-shards v1 manifest$/],
    [{ ...manifest, shards: null }, /^m: dataset manifest shards: /],
    [{ ...manifest, shards: [null] }, /^m: dataset manifest shards\.0: /],
    [{ ...manifest, shards: [{ ...manifest.shards[0], sha256: undefined }] }, /shards\.0\.sha256: /],
    [
      { ...manifest, shards: [{ ...manifest.shards[0], name: '../../etc/passwd' }] },
      /shards\.0\.name: expected shard-<n>\.u8/,
    ],
    [{ ...manifest, height: -1 }, /^m: dataset manifest height: /],
  ];
  for (const [json, message] of bad) {
    const parse = () => parseShardManifest(Buffer.from(JSON.stringify(json)), 'm');
    expect(parse).toThrow(DatasetError);
    expect(parse).toThrow(message);
  }
});
