// The one place the vendored UI library is imported from.
export {
  html, render, createContext, useState, useEffect, useRef, useMemo, useCallback, useContext,
} from '../vendor/htm-preact-3.1.1.module.js';
