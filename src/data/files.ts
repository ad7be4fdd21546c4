/** One tensor from an embedding file: .safetensors (a single tensor) or .npy. */
import * as path from 'node:path';
import { readSafetensors, type FloatTensor } from '../io/safetensors';
import { UserError } from '../errors';
import { readNpy } from '../io/npy';

export function readTensorFile(file: string): FloatTensor {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.npy') return readNpy(file);
  if (ext === '.safetensors') {
    const { tensors } = readSafetensors(file);
    if (tensors.size !== 1) {
      throw new UserError(
        `holds ${tensors.size} tensors (${[...tensors.keys()].slice(0, 5).join(', ')}); an embedding file holds exactly one`,
        { where: file, kind: 'DataError', fix: 'save one tensor per file' },
      );
    }
    return [...tensors.values()][0]!;
  }
  if (['.pt', '.pth', '.bin', '.pkl', '.pickle'].includes(ext)) {
    throw new UserError(`${ext} files are Python pickles, which are not read here (unsafe and Python-only)`, {
      where: file,
      kind: 'DataError',
      fix: `convert it: python -c "import torch, numpy; numpy.save('${file.replace(/\.[^.]+$/, '.npy')}', torch.load('${file}').float().numpy())" and list the .npy file instead; a whole TTT-Video-DiT dataset: ttt-curriculum dataset import <its folder> --out <new folder>`,
    });
  }
  throw new UserError(`unsupported file type "${ext}"`, {
    where: file,
    kind: 'DataError',
    fix: 'use .safetensors or .npy embedding files',
  });
}
