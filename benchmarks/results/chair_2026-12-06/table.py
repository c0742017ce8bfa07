import json,glob,collections,sys
for f in sorted(glob.glob(sys.argv[1]+'/*.json')):
    s=json.load(open(f))
    chair=[];other=[];gch=[];gall=[];ne=[];fog=[];ch=[];oth_by=collections.defaultdict(list); chair_seed=collections.defaultdict(list)
    for cap,e in s['evaluations'].items():
        for sd,r in e['per_seed'].items():
            ok=r['mesh_genus']==r['true_genus']; gall.append(ok); ne.append(r['normal_error_deg']); fog.append(r['fog']); ch.append(r['chamfer'])
            if e['shape']=='chair': chair.append(r['iou']); gch.append(ok); chair_seed[sd].append(r['iou'])
            else: other.append(r['iou']); oth_by[e['shape']].append(r['iou'])
    m=lambda x: sum(x)/len(x)
    print(f.split('/')[-1][:-5].ljust(14), f"chair {m(chair):.3f} ({' '.join(f'{m(v):.2f}' for k,v in sorted(chair_seed.items()))}) genus_ok {sum(gch)}/{len(gch)} | others {m(other):.3f}", ' '.join(f"{k[:4]} {m(v):.2f}" for k,v in sorted(oth_by.items())), f"| genus {sum(gall)}/{len(gall)} normal {m(ne):.1f} fog {m(fog):.3f} chamf {m(ch):.4f}")
