/**
 * Graph replay on the `tensorflow` backend: a pure function of tensors, run once eagerly while
 * every libtensorflow op it runs is recorded, then run as one libtensorflow graph (a session).
 *
 * Why: eager execution runs each op on its own, from the Node thread: a hand-off to the intra-op
 * pool, a fresh output buffer, then a wait. A graph run schedules the same kernels from the pool's
 * own threads, runs independent ops side by side, and lets an op reuse an input buffer that
 * nothing else needs. Measured on 2 cores: a chain of 50 elementwise ops on [16,64,256] float32
 * takes 74 µs an op in a graph against 173-186 µs eager (TensorFlow 2.13 from Python and tfjs-node);
 * the TTT-MLP scan forward and backward at [1,16,14,64,64] 151-157 ms replayed against 310-318 ms
 * eager, in one process.
 *
 * How: libtensorflow has no API in tfjs-node to build a graph, but it loads SavedModels and runs
 * them (tfjs-node's `loadSavedModel`). The recording becomes a GraphDef (Placeholder per input,
 * Const per tensor created inside, one node per op with its attributes), wrapped in a SavedModel
 * with no variables, written to a temporary directory, loaded as a session and removed. The
 * protobuf classes are tfjs-node's own (dist/proto/api_pb). There is no library that does this:
 * TensorFlow's tf.function is Python's.
 *
 * Numerics: the graph's kernels are the eager ones, but TensorFlow's graph optimizer may reorder
 * or fuse arithmetic, so results can differ from the eager run in the last bits (about 1e-7 of the
 * largest value for the TTT scan). Every call, the first one included, returns the graph's
 * results, so a run is the same whether or not it was restarted (bit-exact resume). Runs of one
 * graph with the same inputs are bit-identical (tested).
 *
 * Where: the CPU device of the `tensorflow` backend only (the GPU path is unverified; it runs
 * eagerly). TTT_GRAPH=0 turns it off. A function whose recording fails (an op that reads a tensor
 * made outside it, an attribute kind this does not write) runs eagerly from then on, logged once.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { nativePackageName, tf } from './backend';
import { logger } from './log';
import { DTYPE_ATTR, type NodeBackend, type OpAttr } from './native-kernels';

type Binding = NodeBackend['binding'];

// biome-ignore lint/suspicious/noExplicitAny: tfjs-node's generated protobuf classes have no typings.
type Proto = any;
let proto: Proto | undefined;
function protos(): Proto {
  proto ??= require(`${nativePackageName()}/dist/proto/api_pb`);
  return proto;
}

function shapeProto(shape: readonly number[]): Proto {
  const pb = protos();
  const s = new pb.TensorShape();
  for (const d of shape) {
    const dim = new pb.TensorShape.Dim();
    dim.setSize(d);
    s.addDim(dim);
  }
  return s;
}

function attrProto(b: Binding, a: OpAttr): Proto {
  const pb = protos();
  const v = new pb.AttrValue();
  if (Array.isArray(a.value) && a.type !== b.TF_ATTR_SHAPE) {
    const l = new pb.AttrValue.ListValue();
    if (a.type === b.TF_ATTR_INT) l.setIList(a.value);
    else if (a.type === b.TF_ATTR_FLOAT) l.setFList(a.value);
    else if (a.type === b.TF_ATTR_BOOL) l.setBList(a.value);
    else if (a.type === b.TF_ATTR_TYPE) l.setTypeList(a.value);
    else throw new Error(`attribute ${a.name}: a list of kind ${a.type}`);
    v.setList(l);
    return v;
  }
  if (a.type === b.TF_ATTR_INT) v.setI(a.value);
  else if (a.type === b.TF_ATTR_FLOAT) v.setF(a.value);
  else if (a.type === b.TF_ATTR_BOOL) v.setB(a.value);
  else if (a.type === b.TF_ATTR_TYPE) v.setType(a.value);
  else if (a.type === b.TF_ATTR_SHAPE) v.setShape(shapeProto(a.value as number[]));
  else if (a.type === b.TF_ATTR_STRING) v.setS(Buffer.from(String(a.value)));
  else throw new Error(`attribute ${a.name}: kind ${a.type}`);
  return v;
}

function typeAttr(t: number): Proto {
  const v = new (protos().AttrValue)();
  v.setType(t);
  return v;
}

function nodeDef(name: string, op: string, inputs: string[], attrs: Record<string, Proto>): Proto {
  const n = new (protos().NodeDef)();
  n.setName(name);
  n.setOp(op);
  for (const i of inputs) n.addInput(i);
  for (const [k, v] of Object.entries(attrs)) n.getAttrMap().set(k, v);
  return n;
}

/**
 * Type attributes that tfjs-node leaves to eager execution to infer from the inputs (a graph needs
 * them written): attribute and the input it takes its dtype from.
 */
const INFERRED: Record<string, [string, number][]> = {
  ExpandDims: [
    ['T', 0],
    ['Tdim', 1],
  ],
};

/** How many recordings are under way: a graph function called inside one runs eagerly, into it. */
let recording = 0;

/** A recorded run: its GraphDef's nodes, and per output either the graph output to fetch or the index of the input it is. */
interface Recording {
  nodes: Proto[];
  outputs: (string | number)[];
}

/**
 * Runs `fn(inputs)` eagerly, recording the libtensorflow ops it runs; returns its outputs and the
 * recording. The binding's functions are non-writable properties, so the backend gets a copy of
 * the binding with two of them wrapped, for the duration of the call.
 */
function record(
  be: NodeBackend,
  fn: (xs: tf.Tensor[]) => tf.Tensor[],
  inputs: tf.Tensor[],
): { out: tf.Tensor[]; rec: Recording } {
  const b = be.binding;
  const src = new Map<number, string>(); // libtensorflow tensor id -> graph output
  const dtypeOf = new Map<number, number>(); // libtensorflow tensor id -> its dtype
  const nodes: Proto[] = [];
  be.getInputTensorIds(inputs).forEach((id, i) => {
    const attr = DTYPE_ATTR[inputs[i]!.dtype];
    if (attr === undefined) throw new Error(`input ${i}: dtype ${inputs[i]!.dtype}`);
    const dtype = b[attr];
    const shape = new (protos().AttrValue)();
    shape.setShape(shapeProto(inputs[i]!.shape));
    nodes.push(nodeDef(`in${i}`, 'Placeholder', [], { dtype: typeAttr(dtype), shape }));
    if (!src.has(id)) src.set(id, `in${i}`);
    dtypeOf.set(id, dtype);
  });
  let k = 0;
  const shim: Binding = Object.assign(
    Object.create(null),
    ...Object.getOwnPropertyNames(b).map((p) => ({ [p]: (b as never)[p] })),
    {
      createTensor(shape: number[], dtype: number, values: tf.TypedArray) {
        const id = b.createTensor(shape, dtype, values);
        const t = new (protos().Tensor)();
        t.setDtype(dtype);
        t.setTensorShape(shapeProto(shape));
        t.setTensorContent(
          dtype === b.TF_BOOL
            ? Uint8Array.from(values)
            : new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
        );
        const value = new (protos().AttrValue)();
        value.setTensor(t);
        const name = `c${k++}`;
        dtypeOf.set(id, dtype);
        nodes.push(nodeDef(name, 'Const', [], { dtype: typeAttr(dtype), value }));
        src.set(id, name);
        return id;
      },
      executeOp(op: string, attrs: OpAttr[], ins: number[], n: number) {
        const out = b.executeOp(op, attrs, ins, n);
        const name = `n${k++}`;
        const inputNames = ins.map((id) => {
          const s = src.get(id);
          if (s === undefined) throw new Error(`${op} reads a tensor made outside the function`);
          return s;
        });
        const attrMap = Object.fromEntries(attrs.map((a) => [a.name, attrProto(b, a)]));
        for (const [attr, i] of INFERRED[op] ?? []) attrMap[attr] ??= typeAttr(dtypeOf.get(ins[i]!)!);
        if (op === 'AddN' && inputNames.length > 2) {
          // AddN sums in place into whichever input it may reuse, so in a graph, whose ops run
          // concurrently, its order of summation (and its last bits) would change from run to run.
          // A chain of two-input adds sums left to right, as eager AddN does.
          const T = { T: typeAttr(dtypeOf.get(ins[0]!)!) };
          let acc = inputNames[0]!;
          inputNames.slice(1).forEach((x, j) => {
            const last = j === inputNames.length - 2;
            const part = last ? name : `${name}_${j}`;
            nodes.push(nodeDef(part, 'AddV2', [acc, x], T));
            acc = part;
          });
        } else nodes.push(nodeDef(name, op, inputNames, attrMap));
        out.forEach((m, j) => {
          src.set(m.id, j === 0 ? name : `${name}:${j}`);
          dtypeOf.set(m.id, m.dtype);
        });
        return out;
      },
    },
  );
  be.binding = shim;
  recording++;
  let out: tf.Tensor[] = [];
  let ids: number[];
  try {
    out = tf.tidy(() => fn(inputs));
    ids = be.getInputTensorIds(out);
  } catch (e) {
    tf.dispose(out.filter((t) => !inputs.includes(t)));
    throw e;
  } finally {
    recording--;
    be.binding = b;
  }
  // An output that is an input is that input (a session cannot fetch what it is fed).
  const outputs = ids.map((id) => {
    const s = src.get(id);
    if (s === undefined) throw new Error('an output was made outside the function');
    const input = /^in(\d+)$/.exec(s);
    if (input) return Number(input[1]);
    return s.includes(':') ? s : `${s}:0`;
  });
  return { out, rec: { nodes, outputs } };
}

/** Loads a recording as a libtensorflow session (through a SavedModel written to a temporary directory). */
function load(be: NodeBackend, rec: Recording): number {
  const pb = protos();
  const graph = new pb.GraphDef();
  for (const n of rec.nodes) graph.addNode(n);
  const info = new pb.MetaGraphDef.MetaInfoDef();
  info.addTags('serve');
  const meta = new pb.MetaGraphDef();
  meta.setMetaInfoDef(info);
  meta.setGraphDef(graph);
  const model = new pb.SavedModel();
  model.setSavedModelSchemaVersion(1);
  model.addMetaGraphs(meta);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ttt-graph-'));
  try {
    fs.writeFileSync(path.join(dir, 'saved_model.pb'), model.serializeBinary());
    return be.loadSavedModelMetaGraph(dir, 'serve');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** What a graph function knows about one input signature: its session, what to feed and fetch, and the recording's count. */
type Entry =
  | { session: number; inputs: { name: string }[]; outputs: (string | number)[]; fetch: string[]; cost: number }
  | 'eager';

/**
 * Counting hooks, so that a caller's own accounting (matmul.ts FLOPs) sees a replay as it saw the
 * recorded run: `measure` runs the recording and returns what it counted; `replay` adds it again.
 */
export interface ReplayCount {
  measure<R>(f: () => R): { value: R; count: number };
  replay(count: number): void;
}

/** What graph functions did in this process: recordings, runs as graphs (the first of each included), eager runs after a failed recording. */
export const graphStats = { recorded: 0, replayed: 0, fellBack: 0 };

/** Whether graph replay applies now: the tensorflow backend on its CPU device, not turned off. */
export function graphReplayActive(): boolean {
  if (process.env.TTT_GRAPH === '0' || tf.getBackend() !== 'tensorflow') return false;
  return !(tf.backend() as unknown as NodeBackend).isUsingGpuDevice;
}

/**
 * `fn` (a pure function of its input tensors: same inputs, same outputs; no randomness, no tensor
 * made outside it) run as a libtensorflow graph, one per input signature (shapes and dtypes),
 * where graphReplayActive(); eagerly elsewhere.
 */
export function graphFunction(
  name: string,
  fn: (xs: tf.Tensor[]) => tf.Tensor[],
  count?: ReplayCount,
): (xs: tf.Tensor[]) => tf.Tensor[] {
  const entries = new Map<string, Entry>();
  return (xs) => {
    if (!graphReplayActive() || recording > 0) return fn(xs);
    const be = tf.backend() as unknown as NodeBackend;
    const key = xs.map((x) => `${x.dtype}[${x.shape.join(',')}]`).join(' ');
    let e = entries.get(key);
    if (e === undefined) {
      try {
        const { value, count: cost } = count
          ? count.measure(() => record(be, fn, xs))
          : { value: record(be, fn, xs), count: 0 };
        tf.dispose(value.out.filter((t) => !xs.includes(t))); // (an output may be an input itself)
        const { outputs } = value.rec;
        e = {
          session: load(be, value.rec),
          inputs: xs.map((_, i) => ({ name: `in${i}:0` })),
          outputs,
          fetch: outputs.filter((o): o is string => typeof o === 'string'),
          cost,
        };
        graphStats.recorded++;
        logger.debug({ graph: name, signature: key, nodes: value.rec.nodes.length }, 'graph function recorded');
      } catch (err) {
        logger.warn(
          { graph: name, signature: key, err: (err as Error).message },
          'graph function runs eagerly: recording failed',
        );
        e = 'eager';
      }
      entries.set(key, e);
    }
    if (e === 'eager') {
      graphStats.fellBack++;
      return fn(xs);
    }
    graphStats.replayed++;
    count?.replay(e.cost);
    const fetched = be.runSavedModel(e.session, xs, e.inputs, e.fetch);
    let j = 0;
    return e.outputs.map((o) => (typeof o === 'number' ? xs[o]! : fetched[j++]!));
  };
}
