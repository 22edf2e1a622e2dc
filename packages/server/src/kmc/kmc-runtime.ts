import { Pkcs11KeyStore } from "@ukey/ca";
import { UkeyError, isPairProfile, type Clock } from "@ukey/policy";
import type { Store } from "@ukey/store";
import type { DataDirLayout } from "../data-dir.js";
import { readSecretFile, type ServerConfig } from "../server-config.js";
import { LocalKmc, type KeyManagementCentre } from "./key-management-centre.js";
import { openKmcMasterKeyFile, pkcs11KmcMasterKey, type KmcMasterKey } from "./kmc-master-key.js";
import { RecoveredKeyDelivery, type RecoveredKeySource } from "./recovered-key-delivery.js";

/** The secrets the KMC reads at start: files named by environment variables, never values. */
export interface KmcEnv {
  UKEY_KMC_PASSPHRASE_FILE?: string;
  UKEY_KMC_HSM_PIN_FILE?: string;
}

/** A KMC opened at start, with what closes its HSM session. */
export interface KmcRuntime {
  kmc: KeyManagementCentre;
  /** Escrowed keys released by a dual-control recovery, enveloped for a two-code download's new signing key. */
  recoveredKeys: RecoveredKeySource;
  masterKeyId: string;
  close(): Promise<void>;
}

/**
 * Opens the key management centre that `config.kmc` names, or returns
 * undefined when none is configured and no profile needs one.
 * @throws UkeyError KMC_REQUIRED (a pair profile and no `kmc`), SECRET_FILE_REQUIRED,
 *   KMC_NOT_INITIALISED, KMC_PASSPHRASE_WRONG, KMC_MASTER_KEY_UNUSABLE, HSM_*.
 */
export async function openKmc(config: ServerConfig, layout: DataDirLayout, env: KmcEnv, deps: { store: Pick<Store, "transaction" | "kmcRecoveries" | "kmcEscrows">; clock: Clock }): Promise<KmcRuntime | undefined> {
  const around = (masterKey: KmcMasterKey) => ({
    kmc: new LocalKmc({ store: deps.store, masterKey, clock: deps.clock }),
    recoveredKeys: new RecoveredKeyDelivery({ store: deps.store, masterKey, clock: deps.clock }),
    masterKeyId: masterKey.id,
  });
  const pairs = config.profiles.filter(isPairProfile).map((p) => p.id);
  const mk = config.kmc?.masterKey;
  if (!mk) {
    if (pairs.length) throw new UkeyError("KMC_REQUIRED", { params: { profiles: pairs.join(", ") } });
    return undefined;
  }
  if (mk.type === "file") {
    const masterKey = await openKmcMasterKeyFile(layout.kmcMasterKey, readSecretFile("UKEY_KMC_PASSPHRASE_FILE", env.UKEY_KMC_PASSPHRASE_FILE));
    return { ...around(masterKey), async close() {} };
  }
  const keys = new Pkcs11KeyStore({ module: mk.module, token: mk.token, pin: readSecretFile("UKEY_KMC_HSM_PIN_FILE", env.UKEY_KMC_HSM_PIN_FILE), labelPrefix: mk.labelPrefix });
  try {
    const masterKey = await pkcs11KmcMasterKey(keys, mk.token, mk.label);
    return { ...around(masterKey), async close() { await keys.close(); } };
  } catch (e) {
    await keys.close();
    throw e;
  }
}
