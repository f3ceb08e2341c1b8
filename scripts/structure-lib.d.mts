/** Types of scripts/structure-lib.mjs, for test/structure.test.ts. */

export interface FunctionInfo {
  /** Path under src/. */
  file: string;
  line: number;
  name: string;
  /** From the node's first line to its last, both counted. */
  lines: number;
  /** Positional parameters: all but `this`; a rest parameter counts as one. */
  parameters: number;
}

export interface ImportEdge {
  from: string;
  to: string;
  /** `import type`, `export type ... from` or an import() type. */
  typeOnly: boolean;
}

export type RoomGraph = Map<string, Set<string>>;

export interface Layers {
  count: number;
  /** Importer first; a circle appears as one step `{a, b}`. */
  chain: string[];
}

export interface GraphView {
  edges: number;
  circles: string[][];
  layers: Layers;
  graph: Record<string, string[]>;
}

export interface SealStep {
  file: string;
  line: number;
  name: string;
  call?: { file: string; line: number };
}

export interface SealSearch {
  rooms: number;
  roomList: string[];
  path: SealStep[];
  truncated: boolean;
}

export interface SealOptionsPath extends SealSearch {
  found: boolean;
  reason?: string;
  /** The file that declares createEnvelope. */
  home?: string;
  /** The search that also follows values computed from the options. */
  derived: SealSearch | undefined;
}

export interface Report {
  files: number;
  functions: number;
  rooms: string[];
  longestFunctions: FunctionInfo[];
  mostParameters: FunctionInfo[];
  overLong: FunctionInfo[];
  overParameters: FunctionInfo[];
  imports: GraphView;
  runtimeImports: GraphView;
  sealOptions: SealOptionsPath | undefined;
}

export interface Limits {
  functionLines: number;
  parameters: number;
  layers: number;
  sealOptionsRooms: number;
}

export declare const LIMITS: Readonly<Limits>;
export declare function readSources(srcDir: string): Record<string, string>;
export declare function roomOf(path: string): string;
export declare function functionsOf(path: string, text: string): FunctionInfo[];
export declare function importsOf(path: string, text: string, present?: ReadonlySet<string>): ImportEdge[];
export declare function roomGraph(edges: readonly ImportEdge[], options?: { runtimeOnly?: boolean; rooms?: readonly string[] }): RoomGraph;
export declare function components(graph: RoomGraph): string[][];
export declare function circles(graph: RoomGraph): string[][];
export declare function layers(graph: RoomGraph): Layers;
export declare function sealOptionsPath(files: Readonly<Record<string, string>>, options?: { root?: string; maxDepth?: number; budget?: number }): SealOptionsPath;
export declare function analyze(files: Readonly<Record<string, string>>, options?: { root?: string; sealPath?: boolean; top?: number }): Report;
export declare function violations(report: Report, limits?: Limits): string[];
