"""Plain-language sentences for a rule, in English and Chinese (pure)."""

from .model import Rule

PROTO = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP", "icmp": "ICMP", "6": "TCP", "17": "UDP"}
PURPOSE = {
    ("NETPLUG-HOSTPORTS", "en"): "netplug's published ports",
    ("NETPLUG-HOSTPORTS", "zh"): "netplug 的端口发布链",
    ("NETPLUG-POSTROUTING", "en"): "netplug's outbound NAT",
    ("NETPLUG-POSTROUTING", "zh"): "netplug 的出站 NAT 链",
    ("DOCKER", "en"): "Docker's published ports",
    ("DOCKER", "zh"): "Docker 的端口发布链",
    ("CNI-HOSTPORT-DNAT", "en"): "the CNI portmap plugin's published ports",
    ("CNI-HOSTPORT-DNAT", "zh"): "CNI portmap 插件的端口发布链",
    ("NETAVARK-HOSTPORT-DNAT", "en"): "podman's published ports",
    ("NETAVARK-HOSTPORT-DNAT", "zh"): "podman 的端口发布链",
    ("KUBE-SERVICES", "en"): "Kubernetes Services",
    ("KUBE-SERVICES", "zh"): "Kubernetes Service 链",
}


def _proto(r: Rule, lang: str) -> str:
    p = PROTO.get(r.proto, r.proto.upper() if r.proto else "")
    if lang == "zh":
        return (f"非 {p} " if r.proto_neg else f"{p} ") if p else ""
    if not p:
        return "Packets"
    return f"Non-{p} packets" if r.proto_neg else f"{p} packets"


def conditions(r: Rule, lang: str) -> list[str]:
    en = lang == "en"
    out = []
    if r.src:
        out.append((f"not from {r.src}" if r.src_neg else f"from {r.src}") if en else
                   (f"不来自 {r.src}" if r.src_neg else f"来自 {r.src}"))
    if r.dst:
        if r.src and r.dst == r.src and r.dst_neg:
            out.append("to anywhere outside it" if en else "发往该网段以外的任何地址")
        else:
            out.append((f"to anywhere except {r.dst}" if r.dst_neg else f"to {r.dst}") if en else
                       (f"发往 {r.dst} 以外的地址" if r.dst_neg else f"发往 {r.dst}"))
    for m in r.matches:
        o = m.opts
        if m.name == "addrtype":
            for key, what_en, what_zh in (("dst-type", "addressed to", "目的地址是"),
                                          ("src-type", "sent from", "源地址是")):
                if key in o:
                    t = str(o[key])
                    if t == "LOCAL":
                        desc_en, desc_zh = "any local address of this host", "本机的任一地址"
                    else:
                        desc_en = desc_zh = f"an address of type {t}"
                    neg = key in m.neg
                    out.append(f"{'not ' if neg else ''}{what_en} {desc_en}" if en else
                               f"{what_zh}{'不是' if neg else ''}{desc_zh}")
        elif m.name in ("tcp", "udp", "sctp", "multiport"):
            for key, label_en, label_zh in (("dport", "to port", "目的端口"), ("dports", "to ports", "目的端口"),
                                            ("sport", "from port", "源端口"), ("sports", "from ports", "源端口")):
                if key in o:
                    v = str(o[key]).replace(":", "-")
                    neg = key in m.neg
                    out.append(f"{'not ' if neg else ''}{label_en} {v}" if en else
                               f"{label_zh}{'不是' if neg else '为'} {v}")
        elif m.name == "mark":
            v = o.get("mark", "")
            out.append((f"not carrying mark {v}" if "mark" in m.neg else f"carrying mark {v}") if en else
                       (f"不带标记 {v}" if "mark" in m.neg else f"带有标记 {v}"))
        elif m.name in ("conntrack", "state"):
            v = o.get("ctstate") or o.get("state") or o.get("ctstatus", "")
            neg = bool(m.neg)
            out.append((f"whose connection is {'not ' if neg else ''}{v}") if en else
                       (f"连接状态{'不是' if neg else '为'} {v}"))
        elif m.name == "statistic":
            if o.get("mode") == "random":
                out.append(f"with probability {float(o.get('probability', 0)):g} (load balancing)" if en else
                           f"以 {float(o.get('probability', 0)):g} 的概率（负载均衡）")
        elif m.name == "comment":
            continue
        elif m.name not in ("physdev", "set"):
            out.append(f"matching -m {m.name} (not understood, shown verbatim)" if en else
                       f"匹配 -m {m.name}（无法解析，原样显示）")
    if r.iif:
        out.append((f"not arriving on {r.iif}" if r.iif_neg else f"arriving on {r.iif}") if en else
                   (f"不是从 {r.iif} 进入" if r.iif_neg else f"从 {r.iif} 进入"))
    if r.oif:
        out.append((f"leaving through any interface but {r.oif}" if r.oif_neg else f"leaving through {r.oif}")
                   if en else (f"从 {r.oif} 以外的任何接口发出" if r.oif_neg else f"从 {r.oif} 发出"))
    return out


def action(r: Rule, lang: str) -> str:
    en = lang == "en"
    o, t = r.target_opts, r.target
    if t == "DNAT":
        to = o.get("to-destination", "?")
        return f"go to {to} (destination NAT)" if en else f"被转发到 {to}（目的地址转换，DNAT）"
    if t == "SNAT":
        to = o.get("to-source", "?")
        return f"leave with source address {to} (source NAT)" if en else f"以源地址 {to} 发出（源地址转换，SNAT）"
    if t == "MASQUERADE":
        return ("leave with the address of the outgoing interface (source NAT, MASQUERADE)" if en else
                "以出接口的地址作为源地址发出（源地址转换，MASQUERADE 地址伪装）")
    if t == "MARK":
        v = o.get("set-xmark") or o.get("set-mark") or o.get("or-mark") or o.get("xor-mark") or ""
        return (f"get firewall mark {v}, so a later rule (MASQUERADE in POSTROUTING) picks them out" if en
                else f"被打上防火墙标记 {v}，以便后面的规则（POSTROUTING 中的 MASQUERADE）识别它们")
    if t == "RETURN":
        return ("skip the rest of this chain and return to the chain that jumped here" if en else
                "跳过本链剩余的规则，返回调用它的链")
    if t == "ACCEPT":
        if r.table == "nat":
            return "are left alone: no further NAT rule of this hook applies" if en else "保持不变：本钩子不再做其他 NAT"
        return "are allowed through" if en else "被放行"
    if t == "DROP":
        return "are dropped" if en else "被丢弃"
    if t == "REJECT":
        return "are rejected" if en else "被拒绝"
    if t == "REDIRECT":
        return (f"are redirected to local port {o.get('to-ports', '?')}" if en else
                f"被重定向到本机端口 {o.get('to-ports', '?')}")
    if t == "LOG":
        return "are logged and go on" if en else "被记录日志后继续处理"
    if not t:
        return "are only counted" if en else "只被计数"
    purpose = PURPOSE.get((t, lang)) or _purpose_by_prefix(t, lang)
    if en:
        return f"continue in chain {t}" + (f" ({purpose})" if purpose else "")
    return f"转到链 {t} 继续处理" + (f"（{purpose}）" if purpose else "")


def explain(r: Rule, lang: str, container: dict | None = None) -> str:
    conds = conditions(r, lang)
    if lang == "en":
        s = _proto(r, lang) + (" " + ", ".join(conds) if conds else "") + " " + action(r, lang) + "."
        s = s.replace("packets are ", "packets are ").replace("Packets are only", "Packets are only")
        s = _fix_verb_en(s)
        if _hairpin(r):
            s += " (Hairpin: lets a container reach its own published port through the host address.)"
        if container:
            s += f" Serves container {container['container_id'][:12]} (network {container['network']}, " \
                 f"{container.get('ifname') or 'eth0'})."
        if r.comment:
            s += f' Labelled "{r.comment}".'
        if not r.ifaces_known:
            s += " (This listing hides interfaces; an -i/-o condition may be missing.)"
        if not r.understood:
            s += f" Not fully understood: {' '.join(r.unknown)}; the rule is shown verbatim."
        return s
    p = _proto(r, lang)
    s = ("、".join(conds) + " 的 " if conds else "所有") + f"{p}数据包" + action(r, lang) + "。"
    if _hairpin(r):
        s += "（回环 hairpin：容器通过宿主机地址访问自己发布的端口时，回包才能回到它自己。）"
    if container:
        s += f"服务于容器 {container['container_id'][:12]}（网络 {container['network']}，" \
             f"{container.get('ifname') or 'eth0'}）。"
    if r.comment:
        s += f"注释：“{r.comment}”。"
    if not r.ifaces_known:
        s += "（该列表不显示接口，可能漏掉了 -i/-o 条件。）"
    if not r.understood:
        s += f"未能完全解析：{' '.join(r.unknown)}；规则按原样显示。"
    return s


PREFIXES = [  # chain-name prefix -> what that kind of chain is for
    ("NETPLUG-DN-", "the published ports of one container (netplug)", "单个容器的已发布端口（netplug）"),
    ("CNI-DN-", "the portmap plugin's ports of one container", "portmap 插件为单个容器建立的端口链"),
    ("CNI-HOSTPORT-SETMARK", "marking for masquerade", "打上需要地址伪装的标记"),
    ("CNI-HOSTPORT-MASQ", "masquerading marked packets", "对带标记的数据包做地址伪装"),
    ("CNI-", "the bridge plugin's masquerade chain of one container", "bridge 插件为单个容器建立的地址伪装链"),
    ("NETAVARK-DN-", "podman's ports of one network", "podman 为单个网络建立的端口链"),
    ("NETAVARK-HOSTPORT-SETMARK", "marking for masquerade", "打上需要地址伪装的标记"),
    ("NETAVARK-HOSTPORT-MASQ", "masquerading marked packets", "对带标记的数据包做地址伪装"),
    ("NETAVARK-", "podman's masquerade chain of one network", "podman 为单个网络建立的地址伪装链"),
    ("KUBE-SVC-", "load balancing of one Service", "单个 Service 的负载均衡"),
    ("KUBE-SEP-", "one endpoint (pod) of a Service", "Service 的一个端点（pod）"),
    ("KUBE-MARK-MASQ", "marking for masquerade", "打上需要地址伪装的标记"),
    ("KUBE-NODEPORTS", "NodePort Services", "NodePort 类型的 Service"),
    ("KUBE-POSTROUTING", "masquerading Service traffic", "对 Service 流量做地址伪装"),
    ("LIBVIRT_PRT", "libvirt's outbound NAT", "libvirt 的出站 NAT"),
]


def _purpose_by_prefix(chain: str, lang: str) -> str | None:
    for prefix, en, zh in PREFIXES:
        if chain.startswith(prefix):
            return en if lang == "en" else zh
    return None


def _fix_verb_en(s: str) -> str:
    # "TCP packets ... go to" reads well; "packets ... continue" too; fix "are are"
    return s.replace(" are are ", " are ")


def _hairpin(r: Rule) -> bool:
    return r.target == "MASQUERADE" and bool(r.src) and r.src == r.dst and not r.dst_neg
