import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { presetNames, profilePresets, renderPolicyTableMarkdown, renderPolicyTimelineSvg, renewalChannels } from "../src/index.js";

const docs = resolve(import.meta.dirname, "..", "..", "..", "docs");
const stale = "stale: run `node --import tsx scripts/render-policy-timelines.ts` and commit docs/";

for (const name of presetNames) {
  const p = profilePresets[name];
  test(`the committed timeline of ${name} is what the presets render now`, () => {
    const svg = renderPolicyTimelineSvg(p);
    assert.equal(readFileSync(resolve(docs, "policies", `${name}.svg`), "utf8"), svg, stale);
  });
  test(`the timeline of ${name} is well-formed and shows the preset's days and example dates`, () => {
    const svg = renderPolicyTimelineSvg(p);
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.match(svg, /<\/svg>\n$/);
    // Every opened tag is closed (self-closing or paired), in order.
    const stack: string[] = [];
    for (const m of svg.matchAll(/<(\/?)([a-z]+)[^>]*?(\/?)>/g)) {
      if (m[3]) continue;
      if (m[1]) assert.equal(stack.pop(), m[2]);
      else stack.push(m[2]!);
    }
    assert.deepEqual(stack, []);
    assert.doesNotMatch(svg.replace(/&(amp|lt|gt|quot);/g, ""), /&/);
    assert.ok(svg.includes(`−${p.renewal.noticeDaysBefore} 天/d`), "notice day");
    for (const c of renewalChannels) {
      const w = p.renewal.windows[c];
      if (!w) continue;
      assert.ok(svg.includes(`−${w.opensDaysBefore} 天/d`), `${c} opens`);
      assert.ok(svg.includes(`+${w.closesDaysAfter} 天/d`) || (w.closesDaysAfter === 0 && svg.includes(">0 天/d")), `${c} closes`);
    }
    if (p.renewal.stepUp) assert.ok(svg.includes(`+${p.renewal.stepUp.afterDaysExpired + 1} 天/d`), "step-up");
    assert.ok(svg.includes("2027-03-10"), "the example expiry date");
    assert.ok(svg.includes(p.name["zh-CN"]) && svg.includes(p.name.en));
    assert.match(svg, /中国标准时间/);
    assert.match(svg, /China Standard Time/);
  });
  test(`docs/policies.md shows the current table of ${name}`, () => {
    const md = readFileSync(resolve(docs, "policies.md"), "utf8");
    assert.ok(md.includes(`<!-- policy-table: ${name} -->\n${renderPolicyTableMarkdown(p)}<!-- /policy-table -->`), stale);
    assert.ok(md.includes(`](policies/${name}.svg)`), "the timeline is embedded");
  });
}

test("the example dates follow the example expiry", () => {
  const svg = renderPolicyTimelineSvg(profilePresets["gov-supervision"], { exampleExpiry: "2030-01-31" });
  assert.ok(svg.includes("2029-11-02"), "90 days before 2030-01-31");
  assert.ok(svg.includes("2030-11-27"), "300 days after");
  assert.throws(() => renderPolicyTimelineSvg(profilePresets["gov-supervision"], { exampleExpiry: "31/01/2030" }), RangeError);
});
