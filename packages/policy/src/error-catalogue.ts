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

  // ---- the holder's key (UKey) and the agent ----
  // Holder-facing: plain words, and a next step the holder can take alone.
  // Every legacy code of the seeds lands on one of these (legacy-errors.ts).
  TOKEN_NOT_PRESENT: e("not-found", "没有检测到 UKey：UKey 未插入，或电脑没有识别到它。", "No UKey found: it is not inserted, or the computer does not recognise it.",
    "请用数据线把 UKey 插到电脑的 USB 口（不要用耳机或蓝牙方式）。四代 UKey 请先长按电源键关机，再在关机状态下连接，否则会进入蓝牙模式。仍未识别时换一个 USB 口，并运行 ukey doctor 查看原因。",
    "Connect the UKey to a USB port with its cable (not by audio or Bluetooth). Switch a 4th-generation key off first (hold the power key) and connect it switched off, or it enters Bluetooth mode. If it is still not found, try another USB port and run ukey doctor."),
  TOKEN_MULTIPLE_PRESENT: e("conflict", "插着 {count} 把 UKey，无法确定要操作哪一把。", "{count} UKeys are connected; it is not clear which one to use.",
    "请只保留要更新的那一把 UKey，拔下其他的；或在命令行用 --token 指定序列号。", "Leave only the UKey to renew connected and remove the others, or name it with --token SERIAL."),
  TOKEN_DRIVER_MISSING: e("unavailable", "找不到这把 UKey 的驱动程序（PKCS#11 模块），无法使用它。", "The driver (PKCS#11 module) for this UKey was not found, so it cannot be used.",
    "请安装 UKey 厂商提供的驱动程序（ukey doctor 会显示厂商），或用 --module 指定驱动文件路径，然后重新插入 UKey。不需要安装任何浏览器控件。",
    "Install the driver from the UKey's vendor (ukey doctor shows the vendor), or give the driver file with --module, then insert the UKey again. No browser plug-in is needed."),
  TOKEN_UNSUPPORTED: e("invalid", "这把 UKey 不能在线生成新密钥，因此不能在线更新。", "This UKey cannot generate a new key online, so it cannot be renewed online.",
    "请携带 UKey 和身份证件到机构柜台更换新的 UKey；在到期之前，现有证书仍可正常使用。", "Take the UKey and your ID to the institution's counter for a new UKey; the current certificate keeps working until it expires."),
  TOKEN_STORAGE_FULL: e("conflict", "UKey 存储空间已满，无法写入新的密钥或证书。", "The UKey's storage is full; the new key or certificate cannot be written.",
    "代理会先删除 UKey 中无效的对象（已过期或已被替换的证书及其密钥，从不删除正在使用的证书）后自动重试。如果仍然不够，请运行 ukey init 初始化 UKey（会清除其中的证书并设置新 PIN），然后重新下载证书。",
    "The agent first removes invalid objects from the UKey (expired or superseded certificates and their keys, never the current ones) and tries again. If there is still no room, initialise the UKey with ukey init (this erases its certificates and sets a new PIN), then download the certificate again."),
  TOKEN_KEYGEN_FAILED: e("unavailable", "UKey 生成新的密钥对或证书请求失败。", "The UKey failed to generate the new key pair or certificate request.",
    "请关闭其他正在使用 UKey 的程序（例如网银管理工具），拔下 UKey 重新插入后再次更新；这一步可以安全地重复。多次失败说明 UKey 可能已损坏，请运行 ukey doctor，或到柜台更换 UKey。",
    "Close other programs using the UKey (such as a bank's key manager), reconnect the UKey and renew again; this step is safe to repeat. If it keeps failing the key may be broken: run ukey doctor, or replace the UKey at the counter."),
  TOKEN_PIN_INCORRECT: e("unauthenticated", "UKey 密码（PIN）错误。", "Wrong UKey PIN.",
    "请重新输入，注意大小写和输入法。连续输错会锁定 UKey；如果记不清，请不要反复尝试，可按“忘记 PIN”的办法初始化后重新下载证书。PIN 只在本机代理的窗口中输入，网页从不索要 PIN。",
    "Enter it again, minding letter case and the input method. Repeated wrong PINs lock the UKey; if unsure, stop and use the forgotten-PIN path (initialise, then download again). The PIN is typed only in the agent's own window; no web page ever asks for it."),
  TOKEN_PIN_LOCKED: e("conflict", "UKey 密码（PIN）输错次数过多，已被锁定。", "The UKey PIN is locked after too many wrong attempts.",
    "请运行 ukey init 初始化 UKey，设置新的 PIN（至少 6 位字母或数字）；初始化会清除 UKey 中的证书，之后在本系统重新下载证书即可。",
    "Initialise the UKey with ukey init and set a new PIN (at least 6 letters or digits); this erases the certificates on it, which you then download again here."),
  TOKEN_PIN_PROMPT_FAILED: e("unavailable", "无法显示 UKey 密码（PIN）输入窗口。", "The UKey PIN prompt could not be shown.",
    "如果 UKey 厂商的管理工具开启了“虚拟桌面/安全桌面”选项，请关闭它（必要时先重启电脑）；也可以在命令行运行 ukey renew，在终端中输入 PIN。",
    "If the UKey vendor's manager has a virtual (secure) desktop option switched on, switch it off (restart the computer first if needed); or run ukey renew and type the PIN in the terminal."),
  TOKEN_CONFIRMATION_TIMEOUT: e("conflict", "没有在 UKey 上按键确认，操作已取消。", "The operation was not confirmed on the UKey, so it was cancelled.",
    "请重新开始，在 UKey 屏幕显示确认信息时按 OK 键（部分 UKey 需要再次输入 PIN）。已完成的步骤不会丢失。",
    "Start again and press OK on the UKey when its screen asks (some keys ask for the PIN again). Steps already done are kept."),
  TOKEN_REMOVED_DURING_OPERATION: e("conflict", "操作过程中 UKey 被拔出或断开。", "The UKey was removed or disconnected during the operation.",
    "请重新插入同一把 UKey 并再次运行更新：系统会找到未完成的申请并从中断处继续，您不会因此失去可用的证书。",
    "Insert the same UKey again and renew again: the open order is found and finished from where it stopped, and you are not left without a usable certificate."),

  // ---- the holder's certificate and renewal ----
  NO_CERTIFICATE_FOUND: e("not-found", "在 UKey 或证书文件中没有找到可以更新的证书。", "No certificate to renew was found on the UKey or in the certificate file.",
    "UKey 证书：请插入装有该证书的那一把 UKey。文件证书：用 ukey renew --file 指明旧的 .pfx 文件，无需先导入浏览器或系统证书库。如 UKey 已初始化，请用机构提供的参考号和授权码下载证书。",
    "For a UKey: insert the key that holds the certificate. For a file certificate: name the old .pfx file with ukey renew --file; it does not have to be imported into a browser or system store first. If the UKey was initialised, download the certificate with the reference number and authorization code from the institution."),
  CERT_NOT_ON_TOKEN: e("not-found", "UKey 中没有找到证书 {serial}（例如上次更新在中途中断）。", "Certificate {serial} is not on the UKey (for example, an earlier renewal was interrupted).",
    "请插入同一把 UKey 再次运行更新：系统会找到未完成的申请并完成它——新证书已签发且密钥仍在 UKey 中的会重新写入，否则重新生成密钥并作废未送达的证书。若插错了 UKey，请换上正确的那一把。",
    "Insert the same UKey and renew again: the open order is finished for you. A certificate already issued whose key is still on the UKey is written again; otherwise a new key is made and the undelivered certificate is revoked. If this is the wrong UKey, insert the right one."),
  CERT_INFO_MISMATCH: e("forbidden", "所选证书与本机构的登记记录不一致，不是本机构为您登记的证书。", "The selected certificate does not match the institution's record for you.",
    "新证书的内容总是以机构的登记记录为准，您无需修改证书名称、文件名或后缀。请选择本机构签发给您的证书（ukey status 会列出可以更新的证书）；若登记的姓名或单位本身有误，请让机构更正后再更新。",
    "A new certificate always takes its contents from the institution's record; you never have to rename a certificate or file. Choose the certificate this institution issued to you (ukey status lists those that can be renewed); if the recorded name or organisation is wrong, ask the institution to correct it, then renew."),
  CERT_EXPIRED: e("conflict", "证书已于 {notAfter} 过期，不能再用它登录业务系统。", "The certificate expired on {notAfter} and can no longer be used to sign in.",
    "更新不需要先登录业务系统：打开证书更新页面或运行 ukey renew，页面会说明是否仍可在线更新以及截止日期。",
    "Renewing does not need a sign-in: open the renewal page or run ukey renew; it shows whether online renewal is still open and until when."),
  CERT_REVOKED: e("conflict", "证书 {serial} 已被注销，不能更新。", "Certificate {serial} has been revoked and cannot be renewed.",
    "已注销的证书不能续期。如需新证书，请向机构申请参考号和授权码，用 ukey download 下载到 UKey；或到柜台办理。",
    "A revoked certificate cannot be renewed. For a new one, ask the institution for a reference number and authorization code and fetch it with ukey download, or go to the counter."),
  CERT_ON_HOLD: e("conflict", "证书 {serial} 已被冻结（暂停使用），暂时不能更新。", "Certificate {serial} is on hold (suspended) and cannot be renewed for now.",
    "冻结通常由机构因安全或业务原因设置，只有机构能解除；请向机构询问冻结原因，解除后再更新。", "A hold is set by the institution for security or business reasons and only it can lift it; ask the institution why, then renew once it is lifted."),
  CERT_SUPERSEDED: e("conflict", "证书 {serial} 已经更新过，已有更新的证书替代它。", "Certificate {serial} has already been renewed; a newer certificate replaces it.",
    "无需再次更新。如果新证书不在 UKey 中，请运行 ukey status 或 ukey renew，系统会把已签发的新证书重新写入 UKey。",
    "Nothing more to renew. If the new certificate is not on the UKey, run ukey status or ukey renew and the issued certificate is written to the UKey again."),
  RENEWAL_NOT_YET_OPEN: e("conflict", "证书还不能更新：在线更新将于 {opensAt} 开放。", "It is too early to renew: online renewal opens on {opensAt}.",
    "证书仍然有效，可照常使用。请在 {opensAt} 当天或之后再来更新，届时系统也会提醒您。", "The certificate is still valid; keep using it. Come back on or after {opensAt}; you will be reminded then."),
  RENEWAL_WINDOW_CLOSED: e("forbidden", "在线更新期限已于 {closedAt} 结束，这张证书不能再在线更新。", "The online renewal period ended on {closedAt}; this certificate can no longer be renewed online.",
    "请本人携带有效身份证件和 UKey 到机构柜台办理。过期太久的证书须当面核实身份，以防他人冒名更新。",
    "Go to the institution's counter in person with your ID and the UKey. A certificate expired this long needs an identity check in person, so that nobody else can renew it in your name."),
  RENEWAL_CHANNEL_NOT_OFFERED: e("forbidden", "该证书不能通过{channel}在线更新。", "This certificate cannot be renewed online through {channel}.",
    "请改用{offered}办理；如都不可用，请携带身份证件到机构柜台办理。", "Use {offered} instead; if none is available, go to the institution's counter with your ID."),
  STEP_UP_REQUIRED: e("unauthenticated", "证书已过期较长时间，需要再做一次身份验证才能更新。", "The certificate expired a while ago; one more identity check is needed before renewing.",
    "请按页面提示完成额外验证（例如用已登记的手机扫描二维码确认），完成后更新会自动继续。", "Complete the extra check the page asks for (for example, scan the QR code with your registered phone); the renewal then continues by itself."),
  POSSESSION_PROOF_FAILED: e("unauthenticated", "无法证明 UKey 中持有该证书的私钥。", "The UKey could not prove it holds the certificate's private key.",
    "请确认插入的是存放该证书的那一把 UKey。如果上次更新中断过，再次运行更新即可由系统完成未完成的申请。", "Check that the UKey holding this certificate is inserted. If an earlier renewal was interrupted, renew again and the open order is finished."),
  IDENTITY_MISMATCH: e("unauthenticated", "证件信息与登记记录不符。", "The ID details do not match the record.",
    "请核对证件类型和号码（包括末位 X）后重新输入；连续输错会暂时锁定。若登记的证件信息有误，请到机构更正。", "Check the ID type and number (including a final X) and enter them again; repeated mistakes lock it for a while. If the recorded ID is wrong, have the institution correct it."),
  SESSION_EXPIRED: e("unauthenticated", "页面停留时间过长，登录状态已失效。", "The session has expired.",
    "重新打开更新页面或再次运行 ukey renew 即可：已开始的更新会从中断处继续，不会重复签发，也不会丢失证书。无需关闭所有浏览器。",
    "Open the renewal page again or run ukey renew again: a renewal already started continues where it stopped, with no second certificate and nothing lost. There is no need to close every browser."),
  CODE_INVALID: e("unauthenticated", "验证码或授权码错误。", "The code is not correct.",
    "请核对后重新输入；短信验证码请使用序号与页面一致的最新一条。多次输错后该码会作废。", "Check it and enter it again; for a text message code, use the latest one whose sequence number matches the page. Too many wrong tries void the code."),
  CODE_EXPIRED: e("unauthenticated", "验证码或授权码已过期。", "The code has expired.",
    "短信验证码：请点“重新获取”，使用新收到的验证码。授权码：请向机构申请新的参考号和授权码。", "For a text message code, request a new one and use it. For an authorization code, ask the institution for a new reference number and code."),
  CODE_ALREADY_USED: e("conflict", "该验证码或授权码已经使用过，每个码只能用一次。", "The code has already been used; each code works once.",
    "如果证书已下载到 UKey，直接使用即可（ukey status 可查看）；否则请重新获取验证码，或向机构申请新的授权码。", "If the certificate is already on the UKey, just use it (ukey status shows it); otherwise request a new code, or ask the institution for a new authorization code."),
  CODE_ATTEMPTS_EXCEEDED: e("conflict", "输错次数过多，该码已作废。", "Too many wrong attempts: the code is no longer valid.",
    "为防止他人猜测，作废的码不能再用。请重新获取验证码；授权码请向机构申请新的。", "A voided code cannot be used again, so that nobody can guess it. Request a new code, or ask the institution for a new authorization code."),
  CA_UNREACHABLE: e("unavailable", "证书服务暂时不可用，本次没有签发证书，也没有改变任何内容。", "The certificate service is unavailable for now; nothing was issued or changed.",
    "请稍后再次运行更新，会从中断处继续。若几个小时后仍然如此，请告知机构出现问题的时间。", "Renew again a little later; it continues where it stopped. If it lasts for hours, tell the institution when it happened."),
  SERVER_UNREACHABLE: e("unavailable", "无法连接更新服务器 {server}。", "Cannot reach the renewal server {server}.",
    "请检查网络连接后重试；已开始的更新会从中断处继续。ukey doctor 可检查服务器地址、证书信任和电脑时间。", "Check the network connection and try again; a renewal already started continues where it stopped. ukey doctor checks the server address, its certificate and the computer's clock."),
  PFX_CREATION_FAILED: e("unavailable", "无法保存证书文件（.pfx / PKCS#12）。", "The certificate file (.pfx / PKCS#12) could not be saved.",
    "新证书已签发并保存在服务器上，不会丢失。请确认保存位置可写且有足够空间，然后再次运行 ukey renew --file，代理会重新生成文件。", "The new certificate is issued and kept on the server; nothing is lost. Check that the folder is writable and has room, then run ukey renew --file again and the agent writes the file again."),
  PFX_PASSWORD_INCORRECT: e("unauthenticated", "证书文件（.pfx）的密码不正确，或文件已损坏。", "Wrong password for the certificate file (.pfx), or the file is damaged.",
    "请输入保存该文件时设置的密码；如果文件已损坏，请用备份文件，或向机构申请参考号和授权码重新下载。", "Enter the password set when the file was saved; if the file is damaged, use a backup, or ask the institution for a reference number and authorization code to download it again."),
  DOWNLOAD_BLOCKED: e("invalid", "证书文件的下载被浏览器拦截。", "The browser blocked the certificate file download.",
    "本系统的证书文件由本机代理直接保存，不经过浏览器下载，无需修改浏览器的下载或安全设置。请运行 ukey renew --file 或 ukey status 查看保存位置；已签发的证书保存在服务器上，可随时再次保存。",
    "Certificate files are saved by the agent on your computer, not downloaded by the browser, so no browser download or security setting needs changing. Run ukey renew --file or ukey status to see where it is; the issued certificate stays on the server and can be saved again at any time."),
  AGENT_NOT_RUNNING: e("unavailable", "页面无法连接到本机的 ukey 代理程序。", "The page cannot reach the ukey agent on this computer.",
    "请安装并启动 ukey 代理（下载页提供安装包），然后刷新页面。不需要安装任何浏览器控件或插件，也不需要更改浏览器安全设置。",
    "Install and start the ukey agent (the download page has it), then reload the page. No browser control or plug-in is needed and no browser security setting has to change."),
  AGENT_OUTDATED: e("conflict", "本机的 ukey 代理版本 {version} 过旧，需要 {required} 或更新版本。", "The ukey agent on this computer ({version}) is too old; {required} or later is needed.",
    "请从下载页安装最新版代理后刷新页面；升级不会影响 UKey 中的证书。", "Install the latest agent from the download page and reload the page; upgrading does not touch the certificates on the UKey."),
  ORIGIN_NOT_PAIRED: e("forbidden", "本机的 ukey 代理还没有允许网站 {origin} 使用您的 UKey。", "The ukey agent has not allowed the site {origin} to use your UKey yet.",
    "如果这是您机构的网址，请把代理窗口显示的 6 位配对码输入到页面中完成配对；如果不是，请拒绝。任何网页都不能在您不知情时使用 UKey。",
    "If this is your institution's address, type the 6-digit pairing code the agent shows into the page; if it is not, refuse. No web page can use your UKey without you knowing."),
  BROWSER_PLUGIN_NOT_NEEDED: e("invalid", "本系统不需要 IE 浏览器、ActiveX 或 CFCA 控件，也不需要把浏览器安全级别调低。", "This system needs no Internet Explorer, ActiveX or CFCA control, and no lowered browser security.",
    "请不要安装浏览器控件，也不要把安全级别设为“低”。用任意新版浏览器（Chrome、Edge、Firefox、Safari 等）打开更新页面，并安装运行本机的 ukey 代理即可；也可以直接在命令行运行 ukey renew。",
    "Do not install browser controls or set security to low. Open the renewal page in any current browser (Chrome, Edge, Firefox, Safari and others) with the ukey agent installed and running, or run ukey renew on the command line."),

  // ---- operator configuration of key vendors ----
  KEY_VENDOR_TABLE_INVALID: e("invalid", "UKey 厂商表配置不正确：{reason}", "Invalid key vendor table: {reason}",
    "请按 docs/key-vendors.md 修改配置文件中的 keyVendors 后重新启动。", "Fix keyVendors in the configuration as docs/key-vendors.md describes, then start again."),

  // ---- OCSP ----
  OCSP_REQUEST_MALFORMED: e("invalid", "OCSP 请求格式不正确：{reason}", "Malformed OCSP request: {reason}",
    "请发送 RFC 6960 格式的 OCSP 请求（例如使用 openssl ocsp）。", "Send an RFC 6960 OCSP request (for example with openssl ocsp)."),
} as const satisfies Record<string, CatalogueEntry>;

/** A code of the catalogue. */
export type ErrorCode = keyof typeof catalogue;

/** All codes, for help pages and the catalogue test. */
export const errorCodes = Object.keys(catalogue) as ErrorCode[];
