// Types for the parts of complex-matcher (Xen Orchestra's filter syntax, a
// CommonJS package without typings) that the gateway uses.
declare module 'complex-matcher' {
  export class Node {
    createPredicate(): (value: unknown) => boolean;
    match(value: unknown): boolean;
    toString(): string;
  }
  export class And extends Node {
    children: Node[];
  }
  export class Or extends Node {
    children: Node[];
  }
  export class Not extends Node {
    child: Node;
  }
  export class Property extends Node {
    name: string;
    child: Node;
  }
  export class TruthyProperty extends Node {
    name: string;
  }
  /** Throws Error("parse error: expected X at position N") on bad input. */
  export function parse(input: string): Node;
}
