// Pooled features of a TensorFlow.js network that an npm package ships, for the pictures of PREFIX.bin
// (written by pictures.py), as OUT (raw float32, one row per picture).
//
//   node tfjs_features.mjs nsfwjs MODEL LAYER PREFIX OUT          a layer of one of nsfwjs's bundled models
//   node tfjs_features.mjs graph MODEL.json NODE SCALE PREFIX OUT  a node of a graph model, input times SCALE
//
// Four-dimensional outputs are averaged over space. Runs on tfjs's wasm backend (no native TensorFlow).
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as nsfwjs from 'nsfwjs';
import fs from 'fs';

function pooled(y) {
  return y.rank > 2 ? y.mean([1, 2]) : y;
}

async function nsfwjsLayer(name, layerName, size) {
  const model = (await nsfwjs.load(name, { size })).model;
  const layer = model.layers.find((l) => l.name === layerName);
  if (!layer) throw new Error(`${name} has no layer ${layerName}`);
  const upToLayer = tf.model({ inputs: model.inputs, outputs: layer.output });
  return (x) => pooled(upToLayer.predict(x));
}

function readGraphModel(file) {
  const json = JSON.parse(fs.readFileSync(file));
  const dir = file.replace(/[^/]*$/, '');
  const weights = Buffer.concat(json.weightsManifest.flatMap((g) => g.paths).map((p) => fs.readFileSync(dir + p)));
  return {
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
    weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.length),
    format: json.format,
    signature: json.signature,
  };
}

async function graphNode(file, node, scale) {
  const model = await tf.loadGraphModel({ load: async () => readGraphModel(file) });
  const [, height, width] = model.inputs[0].shape;
  return (x) => pooled(model.execute(tf.image.resizeBilinear(x, [height, width]).mul(scale), node));
}

async function main(args) {
  await tf.setBackend('wasm');
  await tf.ready();
  const [prefix, out] = args.slice(-2);
  const meta = JSON.parse(fs.readFileSync(prefix + '.json'));
  const size = meta.size;
  const network =
    args[0] === 'nsfwjs' ? await nsfwjsLayer(args[1], args[2], size) : await graphNode(args[1], args[2], Number(args[3]));
  const bytes = fs.readFileSync(prefix + '.bin');
  const pixels = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  const plane = size * size * 3;
  const rows = [];
  for (let i = 0; i < meta.items.length; i++) {
    const picture = pixels.subarray(i * plane, (i + 1) * plane);
    const y = tf.tidy(() => network(tf.tensor4d(picture, [1, size, size, 3])));
    rows.push(...(await y.data()));
    y.dispose();
  }
  fs.writeFileSync(out, Buffer.from(new Float32Array(rows).buffer));
}

await main(process.argv.slice(2));
