import { cleanUpFlow } from "./clean-up.js";
import { doctorFlow } from "./doctor.js";
import { downloadFlow } from "./download-flow.js";
import type { Flows } from "./flow-types.js";
import { changePinFlow, initialiseFlow } from "./init-flow.js";
import { renewFlow } from "./renew-flow.js";
import { readCertificatesFlow, statusFlow } from "./status.js";

/** The holder's operations over any key backend, as the CLI and the local API call them. */
export const flows: Flows = {
  status: (ctx) => statusFlow(ctx),
  renew: renewFlow,
  download: downloadFlow,
  initialise: initialiseFlow,
  changePin: changePinFlow,
  cleanUp: cleanUpFlow,
  doctor: (ctx) => doctorFlow(ctx),
  readCertificates: readCertificatesFlow,
};

export { certIdOf } from "./certificate-id.js";
export { planCleanUp, type InvalidObject } from "./clean-up.js";
export { faultFromEnv } from "./fault.js";
export { possessionMessage } from "./renew-flow.js";
export { resolveToken } from "./token-access.js";
export { cleanUpFlow, doctorFlow, downloadFlow, changePinFlow, initialiseFlow, renewFlow, readCertificatesFlow, statusFlow };
