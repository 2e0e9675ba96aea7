// The imports between internal.vm.volume.ImportBegin and ImportEnd: which
// volume of which qube awaits data, of what size and in which file. Other
// operations on a volume are refused while its import is open.
export interface ImportState {
  size: number;
  path: string;
}

export class ImportSessions {
  private readonly open = new Map<string, ImportState>();

  private key(vm: string, volume: string): string {
    return `${vm}\0${volume}`;
  }

  begin(vm: string, volume: string, state: ImportState): void {
    this.open.set(this.key(vm, volume), state);
  }

  /** Is an import into this volume open? */
  has(vm: string, volume: string): boolean {
    return this.open.has(this.key(vm, volume));
  }

  /** The open import, now closed; undefined when there was none. */
  end(vm: string, volume: string): ImportState | undefined {
    const k = this.key(vm, volume);
    const state = this.open.get(k);
    this.open.delete(k);
    return state;
  }
}
