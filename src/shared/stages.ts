/**
 * The curriculum's video lengths as data: 16 fps, the VAE compresses time 4x, 3-second segments
 * sharing one latent frame. Pure and import-free, so the workflow sandbox and the library share it.
 */
export const VIDEO_LENGTHS = ['3sec', '9sec', '18sec', '30sec', '63sec'] as const;
export type VideoLength = (typeof VIDEO_LENGTHS)[number];

/** Latent frames per 3-second segment. */
export const FRAMES_PER_SEGMENT = 13;
/** Consecutive segments share one latent frame: segment i starts at frame SEGMENT_STRIDE * i. */
export const SEGMENT_STRIDE = FRAMES_PER_SEGMENT - 1;

/** Facts of one curriculum video length. */
export interface VideoLengthInfo {
  videoLength: VideoLength;
  /** Stage name used in results, folders and `until`: "3s", "9s", ... */
  stage: string;
  seconds: number;
  latentFrames: number;
  segments: number;
}

const TABLE: Record<VideoLength, [seconds: number, latentFrames: number, segments: number]> = {
  '3sec': [3, 13, 1],
  '9sec': [9, 37, 3],
  '18sec': [18, 73, 6],
  '30sec': [30, 121, 10],
  '63sec': [63, 253, 21],
};

export function videoLengthInfo(v: VideoLength): VideoLengthInfo {
  const [seconds, latentFrames, segments] = TABLE[v];
  return { videoLength: v, stage: `${seconds}s`, seconds, latentFrames, segments };
}

/** Accepts "18s", "18sec" or "18" and returns the stage name "18s", or undefined. */
export function normaliseStageName(s: string): string | undefined {
  const m = /^(\d+)(s|sec)?$/.exec(s.trim());
  if (!m) return undefined;
  const key = `${m[1]}sec` as VideoLength;
  return key in TABLE ? `${m[1]}s` : undefined;
}
