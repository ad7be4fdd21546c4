/** tf.customGrad with the types the model uses (its own typings take untyped variadic arguments). */
import { tf } from '../backend';

/**
 * A function of the tensors `I` whose gradient `forward` writes out: `forward(inputs, save)`
 * returns the value and its gradient function, which gets back what `save` kept (`S`) and
 * returns one gradient per input.
 */
export function withGradient<I extends tf.Tensor[], S extends tf.Tensor[] = tf.Tensor[]>(
  forward: (
    inputs: I,
    save: (saved: S) => void,
  ) => { value: tf.Tensor; gradFunc: (dy: tf.Tensor, saved: S) => tf.Tensor | tf.Tensor[] },
): (...inputs: I) => tf.Tensor {
  const f = tf.customGrad(((...args: unknown[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    return forward(args as I, save as (saved: S) => void);
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return (...inputs: I) => f(...inputs);
}
