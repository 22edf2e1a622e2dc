// The keys of audit entries' data as operators read them: Chinese first, the
// raw key only as a tooltip. A key missing here is shown as it is (the audit
// test lists the keys a renewal, a download and a hold write, and fails on a
// new one without a label).

const labels: Record<string, { zh: string; en: string }> = {
  holderId: { zh: "持有人", en: "Holder" }, holder: { zh: "持有人", en: "Holder" }, profileId: { zh: "证书类型", en: "Profile" },
  subject: { zh: "证书主题", en: "Subject" }, notBefore: { zh: "生效时间", en: "Valid from" }, notAfter: { zh: "到期时间", en: "Valid until" },
  serial: { zh: "证书序列号", en: "Serial" }, newSerial: { zh: "新证书序列号", en: "New serial" }, encryptionSerial: { zh: "加密证书序列号", en: "Encryption certificate" },
  renews: { zh: "更新的证书", en: "Renews" }, pairOf: { zh: "所属证书对", en: "Pair of" }, order: { zh: "更新申请", en: "Order" }, orderId: { zh: "更新申请", en: "Order" },
  channel: { zh: "渠道", en: "Channel" }, reason: { zh: "原因", en: "Reason" }, why: { zh: "原因", en: "Why" }, state: { zh: "状态", en: "State" },
  previousStatus: { zh: "原状态", en: "Previous status" }, heldAt: { zh: "冻结时间", en: "Held at" }, revoked: { zh: "已注销", en: "Revoked" },
  enrolment: { zh: "下载授权", en: "Enrolment" }, enrolmentId: { zh: "下载授权", en: "Enrolment" }, referenceNumber: { zh: "参考号", en: "Reference number" },
  attempts: { zh: "尝试次数", en: "Attempts" }, maxAttempts: { zh: "最多尝试次数", en: "Max attempts" }, idAttempts: { zh: "证件号码尝试次数", en: "ID number attempts" },
  idMasked: { zh: "证件号码（部分隐藏）", en: "ID number (masked)" }, code: { zh: "错误代码", en: "Code" }, failure: { zh: "失败原因", en: "Failure" },
  expiresAt: { zh: "失效时间", en: "Expires at" }, lastFailureAt: { zh: "上次失败时间", en: "Last failure" }, firstAt: { zh: "首次时间", en: "First at" },
  lastAt: { zh: "最近时间", en: "Last at" }, count: { zh: "次数", en: "Count" }, ip: { zh: "来源地址", en: "IP address" }, method: { zh: "方式", en: "Method" },
  role: { zh: "角色", en: "Role" }, by: { zh: "操作人", en: "By" }, requestedBy: { zh: "申请人", en: "Requested by" }, escrowIds: { zh: "托管密钥", en: "Escrowed keys" },
  masterKeyId: { zh: "主密钥", en: "Master key" }, algorithm: { zh: "算法", en: "Algorithm" }, signer: { zh: "签名密钥", en: "Signer" },
  tokenSerial: { zh: "UKey 序列号", en: "Key serial" }, kind: { zh: "种类", en: "Kind" }, type: { zh: "类型", en: "Type" }, name: { zh: "名称", en: "Name" },
  email: { zh: "电子邮件", en: "E-mail" }, sms: { zh: "短信", en: "SMS" }, before: { zh: "修改前", en: "Before" }, after: { zh: "修改后", en: "After" },
  threshold: { zh: "提醒节点（天）", en: "Threshold (days)" }, reminder: { zh: "提醒", en: "Reminder" }, fromDay: { zh: "起始日", en: "From day" }, toDay: { zh: "截止日", en: "To day" },
  version: { zh: "版本", en: "Version" }, files: { zh: "文件", en: "Files" }, file: { zh: "文件", en: "File" }, origins: { zh: "网站", en: "Origins" },
  credential: { zh: "凭据", en: "Credential" }, certificatePinned: { zh: "绑定证书", en: "Certificate pinned" }, what: { zh: "内容", en: "What" },
  again: { zh: "重新下发", en: "Again" }, keyStore: { zh: "密钥存储", en: "Key store" }, issuing: { zh: "签发 CA", en: "Issuing CA" }, root: { zh: "根 CA", en: "Root CA" },
  actions: { zh: "操作", en: "Actions" }, imported: { zh: "导入", en: "Imported" }, status: { zh: "状态", en: "Status" }, note: { zh: "备注", en: "Note" },
  weeks: { zh: "周数", en: "Weeks" }, limit: { zh: "条数上限", en: "Limit" }, offset: { zh: "起始位置", en: "Offset" },
  idType: { zh: "证件类型", en: "ID type" }, searchedBy: { zh: "查询方式", en: "Searched by" }, expiringBefore: { zh: "到期早于", en: "Expiring before" },
  fromSeq: { zh: "起始序号", en: "From entry" }, label: { zh: "名称", en: "Label" }, phone: { zh: "手机号", en: "Phone" },
  stepUp: { zh: "加强验证", en: "Step-up" }, resumed: { zh: "继续未完成的申请", en: "Resumed" }, profile: { zh: "证书类型", en: "Profile" },
};

/** The label of an audit data key in the language `lang`; undefined for a key without one. */
export function auditKeyLabel(key: string, lang: "zh-CN" | "en"): string | undefined {
  const l = labels[key];
  return l ? (lang === "en" ? l.en : l.zh) : undefined;
}

/** Every key with a label (for the test that checks entries written by the server have one). */
export const labelledAuditKeys: readonly string[] = Object.keys(labels);
