// ESM entry: the same functions as the CommonJS one (index.cjs).
import tether from './index.cjs';

export const { getLoadablePath, load, sync, push, pull, status } = tether;
