import type { ErrorKind } from "./errors.js";

/** One catalogue entry: what happened and what to do, in zh-CN and en. */
export interface CatalogueEntry {
  kind: ErrorKind;
  zh: string;
  en: string;
  remedyZh: string;
  remedyEn: string;
}

const e = (kind: ErrorKind, zh: string, en: string, remedyZh: string, remedyEn: string): CatalogueEntry =>
  ({ kind, zh, en, remedyZh, remedyEn });

/**
 * The closed catalogue of error codes. Codes are stable: once published
 * they are never reused for another meaning. Messages may carry `{name}`
 * placeholders filled from the error's params.
 */
export const catalogue = {
  // ---- requests, arguments, files, configuration ----
  REQUEST_INVALID: e("invalid", "请求内容不正确：{reason}", "The request is not valid: {reason}",
    "请检查提交的内容后重试；如由程序提交，请对照 API 文档。", "Check what was sent and try again; integrators: see the API document."),
  REQUEST_TOO_LARGE: e("too-large", "提交的内容过大（上限 {limit} 字节）。", "The request body is too large (limit {limit} bytes).",
    "请只提交所需的证书或请求文件。", "Send only the certificate or request that is needed."),
  UNSUPPORTED_MEDIA_TYPE: e("invalid", "不支持的内容类型：{type}", "Unsupported content type: {type}",
    "请按接口文档使用正确的 Content-Type。", "Use the Content-Type the API document gives for this endpoint."),
  ROUTE_NOT_FOUND: e("not-found", "找不到该地址。", "No such address.",
    "请检查网址；接口列表见 /api/v1/openapi.json。", "Check the URL; the API is listed at /api/v1/openapi.json."),
  INTERNAL: e("internal", "服务器内部错误，已记录。", "Internal server error; it has been logged.",
    "请稍后重试；如仍失败，请联系运营机构并提供时间。", "Try again later; if it persists, contact the operator with the time of the error."),
  CLI_USAGE: e("invalid", "命令参数不正确：{reason}", "Invalid command arguments: {reason}",
    "运行命令并加 --help 查看用法。", "Run the command with --help for usage."),
  CONFIG_INVALID: e("invalid", "配置不正确：{reason}", "Invalid configuration: {reason}",
    "请按 docs/configuration.md 修改配置后重新启动。", "Fix the configuration as docs/configuration.md describes, then start again."),
  FILE_UNREADABLE: e("invalid", "无法读取文件 {path}。", "Cannot read file {path}.",
    "请确认文件存在且当前用户有读取权限。", "Check that the file exists and the current user may read it."),
  SECRET_FILE_REQUIRED: e("invalid", "缺少口令文件：请设置 {variable}。", "A secret file is required: set {variable}.",
    "将口令写入仅本用户可读的文件，并把路径设为 {variable}；系统不提供默认口令。", "Write the secret to a file only this user can read and set {variable} to its path; there is no default secret."),

  // ---- encodings, CSRs, keys ----
  PEM_MALFORMED: e("invalid", "PEM 格式不正确：{reason}", "Malformed PEM: {reason}",
    "请提交完整的 PEM 文件（含 -----BEGIN ... ----- 与 -----END ... ----- 行）。", "Send the whole PEM file, with its -----BEGIN and -----END lines."),
  DER_MALFORMED: e("invalid", "数据不是有效的 DER 编码：{reason}", "Not valid DER: {reason}",
    "请确认文件未损坏，且为证书、证书请求或 CRL 的二进制（DER）或 PEM 形式。", "Check the file is intact and is a certificate, request or CRL in DER or PEM form."),
  CSR_MALFORMED: e("invalid", "证书请求（CSR）格式不正确：{reason}", "The certificate request (CSR) is malformed: {reason}",
    "请重新生成证书请求（PKCS#10）。", "Generate the certificate request (PKCS#10) again."),
  CSR_SIGNATURE_INVALID: e("invalid", "证书请求的签名无效，无法证明持有私钥。", "The CSR's signature is invalid: it does not prove possession of the key.",
    "请用对应的私钥重新生成证书请求；不要修改已生成的请求。", "Generate the request again with its own private key; do not edit a generated request."),
  KEY_ALGORITHM_UNSUPPORTED: e("invalid", "不支持的密钥算法：{algorithm}", "Unsupported key algorithm: {algorithm}",
    "请使用 P-256、P-384 或 RSA（2048 位及以上）密钥。", "Use a P-256, P-384 or RSA (2048 bits or more) key."),
  KEY_TOO_WEAK: e("invalid", "密钥强度不足：{algorithm}", "The key is too weak: {algorithm}",
    "请生成至少 2048 位的 RSA 密钥或 P-256/P-384 密钥。", "Generate an RSA key of at least 2048 bits, or a P-256/P-384 key."),
  KEY_ALGORITHM_NOT_ALLOWED: e("invalid", "证书模板 {profile} 不允许 {algorithm} 密钥（允许：{allowed}）。", "Profile {profile} does not allow {algorithm} keys (allowed: {allowed}).",
    "请按允许的算法重新生成密钥和证书请求。", "Generate the key and request again with an allowed algorithm."),
  SERIAL_MALFORMED: e("invalid", "证书序列号格式不正确：{serial}", "Malformed certificate serial number: {serial}",
    "序列号为十六进制字符，可含冒号，例如 3a:f2:...。", "A serial is hexadecimal, optionally with colons, e.g. 3a:f2:..."),

  // ---- certificate authority ----
  CA_NOT_INITIALISED: e("conflict", "数据目录 {dir} 尚未初始化证书机构。", "No certificate authority has been initialised in {dir}.",
    "请先运行 ukey-server init --data-dir {dir}。", "Run ukey-server init --data-dir {dir} first."),
  CA_ALREADY_INITIALISED: e("conflict", "数据目录 {dir} 已有证书机构，未做任何修改。", "A certificate authority already exists in {dir}; nothing was changed.",
    "如需新的证书机构，请使用新的数据目录。", "Use a new data directory for a new certificate authority."),
  CA_PASSPHRASE_WRONG: e("unauthenticated", "证书机构私钥口令错误。", "Wrong passphrase for the CA private key.",
    "请检查 UKEY_CA_PASSPHRASE_FILE 指向的文件内容（末尾换行会被忽略）。", "Check the file UKEY_CA_PASSPHRASE_FILE points to (a trailing newline is ignored)."),
  CA_KEY_UNUSABLE: e("invalid", "证书机构私钥文件损坏或与证书不匹配：{path}", "The CA key file is damaged or does not match its certificate: {path}",
    "请从备份恢复数据目录的 ca/ 子目录。", "Restore the data directory's ca/ folder from a backup."),
  HSM_MODULE_LOAD_FAILED: e("unavailable", "无法加载 PKCS#11 模块 {module}。", "Cannot load the PKCS#11 module {module}.",
    "请确认模块路径正确且已安装 HSM 厂商的驱动（测试环境：softhsm2）。", "Check the module path and that the HSM vendor's library is installed (tests: softhsm2)."),
  HSM_TOKEN_NOT_FOUND: e("unavailable", "在 PKCS#11 模块中找不到令牌 {token}。", "No PKCS#11 token {token} in the module.",
    "请确认令牌标签或序列号，以及令牌已初始化。", "Check the token label or serial and that the token is initialised."),
  HSM_PIN_INCORRECT: e("unauthenticated", "HSM 用户 PIN 错误。", "Wrong HSM user PIN.",
    "请检查 UKEY_HSM_PIN_FILE 指向的文件内容。", "Check the file UKEY_HSM_PIN_FILE points to."),
  HSM_KEY_NOT_FOUND: e("not-found", "HSM 中找不到密钥 {label}。", "No key {label} in the HSM.",
    "请确认密钥标签，或用 ukey-server init --hsm-module ... 生成。", "Check the key label, or create it with ukey-server init --hsm-module ...."),
  HSM_OPERATION_FAILED: e("unavailable", "HSM 操作失败：{reason}", "HSM operation failed: {reason}",
    "请检查 HSM 状态后重试。", "Check the HSM's state and try again."),

  // ---- storage ----
  DATA_DIR_LOCKED: e("conflict", "数据目录 {dir} 正被另一个进程使用。", "The data directory {dir} is in use by another process.",
    "请先停止正在运行的 ukey-server，或在运行中的服务上使用管理接口。", "Stop the running ukey-server first, or use the admin API of the running server."),
  DATA_DIR_CORRUPT: e("unavailable", "数据目录 {dir} 的数据库已损坏：{reason}", "The database in {dir} is corrupt: {reason}",
    "请停止服务并从备份恢复；不要删除文件。", "Stop the server and restore from a backup; do not delete files."),
  DATABASE_UNAVAILABLE: e("unavailable", "无法连接数据库：{reason}", "Cannot reach the database: {reason}",
    "请检查 UKEY_DATABASE_URL 与数据库服务状态。", "Check UKEY_DATABASE_URL and that the database server is up."),
  DATABASE_SCHEMA_NEWER: e("conflict", "数据库结构版本 {found} 高于本程序支持的 {supported}。", "The database schema version {found} is newer than this program supports ({supported}).",
    "请升级 ukey-renew 至与数据库相同或更新的版本。", "Upgrade ukey-renew to the version that wrote this database or later."),
  AUDIT_CHAIN_BROKEN: e("conflict", "审计日志在第 {seq} 条处被修改、删除或重排：{reason}", "The audit log was changed, removed or reordered at entry {seq}: {reason}",
    "立即保全数据库与备份，并按安全事件流程处理。", "Preserve the database and its backups now and follow the security incident procedure."),
  RECORD_DUPLICATE: e("conflict", "记录已存在：{record}，未做任何修改。", "The record already exists: {record}; nothing was changed.",
    "请使用已有记录，或换用新的编号后重试。", "Use the existing record, or try again with a new identifier."),
  RECORD_NOT_FOUND: e("not-found", "找不到记录：{record}。", "No such record: {record}.",
    "请核对编号；记录可能已被删除或从未创建。", "Check the identifier; the record may never have been created."),
  ORDER_ALREADY_OPEN: e("conflict", "证书 {serial} 已有一个进行中的更新申请。", "Certificate {serial} already has a renewal in progress.",
    "请继续完成该申请（重新打开更新页面即可），或等其取消或过期后再试。", "Continue that renewal (open the renewal page again), or wait until it is cancelled or expires."),
  CERT_INTENT_NOT_PENDING: e("conflict", "证书 {serial} 不是待签发状态，无法完成签发。", "Certificate {serial} is not pending issuance, so it cannot be completed.",
    "请重新发起更新；系统会为此生成新的证书。", "Start the renewal again; a new certificate will be issued for it."),

  // ---- holders, profiles, certificates ----
  HOLDER_NOT_FOUND: e("not-found", "找不到持有人 {holder}。", "No holder {holder}.",
    "请确认持有人编号，或先导入持有人。", "Check the holder ID, or import the holder first."),
  PROFILE_NOT_FOUND: e("not-found", "找不到证书模板 {profile}。", "No certificate profile {profile}.",
    "可用的模板见 ukey-server profiles 或配置文件。", "See the configured profiles for the names that exist."),
  PROFILE_INVALID: e("invalid", "证书模板配置不正确：{reason}", "Invalid certificate profile: {reason}",
    "请按 docs/policies.md 修改所指字段（时间窗口须先开始后结束，算法列表不能为空，模板编号不能重复）后重新加载。", "Fix the field named, as docs/policies.md describes (a window must open before it closes, the algorithm list must not be empty, ids must be unique), then load again."),
  CERT_NOT_FOUND: e("not-found", "找不到序列号为 {serial} 的证书。", "No certificate with serial {serial}.",
    "请核对序列号（十六进制）。", "Check the serial number (hexadecimal)."),
  CERT_ALREADY_REVOKED: e("conflict", "证书 {serial} 已于 {revokedAt} 注销。", "Certificate {serial} was already revoked on {revokedAt}.",
    "无需再次注销。如需新证书，请办理下载或更新。", "Nothing more to do; to get a new certificate, enrol or renew."),
  CERT_ID_MALFORMED: e("invalid", "证书标识格式不正确：{reason}", "Malformed certificate identifier: {reason}",
    "证书标识为 base64url(授权密钥标识).base64url(序列号)，见 RFC 9773；请从证书重新计算。", "A certificate identifier is base64url(AKI keyIdentifier) \".\" base64url(serial), as RFC 9773 defines; compute it again from the certificate."),
  REVOCATION_REASON_INVALID: e("invalid", "注销原因不正确：{reason}", "Invalid revocation reason: {reason}",
    "可用原因：unspecified、keyCompromise、affiliationChanged、superseded、cessationOfOperation、certificateHold、privilegeWithdrawn。", "Use one of: unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, privilegeWithdrawn."),

  // ---- import ----
  IMPORT_ROW_INVALID: e("invalid", "导入文件 {file} 第 {line} 行有误：{reason}", "Import file {file}, line {line}: {reason}",
    "请修正该行后重新导入；本次未导入任何内容。", "Fix that line and import again; nothing was imported."),
  IMPORT_ISSUER_UNKNOWN: e("invalid", "证书 {serial} 的签发者 {issuer} 不在已知的证书链中。", "Certificate {serial} was issued by {issuer}, which is not in a known chain.",
    "请用 --chain 提供该签发者的证书链；本次未导入任何内容。", "Give that issuer's chain with --chain; nothing was imported."),
  IMPORT_CHAIN_INVALID: e("invalid", "证书链无效：{reason}", "The certificate chain is invalid: {reason}",
    "请提供从签发 CA 到根 CA 的完整证书链。", "Give the whole chain from the issuing CA up to its root."),
  IMPORT_HOLDER_UNKNOWN: e("invalid", "证书 {serial} 找不到对应的持有人（{reason}）。", "Certificate {serial} has no matching holder ({reason}).",
    "请在持有人文件中加入该持有人，或在证书行中指明持有人编号；本次未导入任何内容。", "Add the holder to the holders file, or name the holder for that certificate; nothing was imported."),

  // ---- OCSP ----
  OCSP_REQUEST_MALFORMED: e("invalid", "OCSP 请求格式不正确：{reason}", "Malformed OCSP request: {reason}",
    "请发送 RFC 6960 格式的 OCSP 请求（例如使用 openssl ocsp）。", "Send an RFC 6960 OCSP request (for example with openssl ocsp)."),
} as const satisfies Record<string, CatalogueEntry>;

/** A code of the catalogue. */
export type ErrorCode = keyof typeof catalogue;

/** All codes, for help pages and the catalogue test. */
export const errorCodes = Object.keys(catalogue) as ErrorCode[];
